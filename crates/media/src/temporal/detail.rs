//! The output-resolution half of the stabiliser. A frame is split into a *base*, the source
//! upscaled by plain cubic interpolation, and the *detail* the model adds on top of it (in
//! every channel: stabilising luma alone leaves most of the flicker, the models' colour
//! fringes shimmer too). Only the detail is blended over time: the base follows the source exactly, so
//! real change (motion, fades, lighting) is never held back, while the texture the model
//! redraws differently in every frame is kept consistent.
//!
//! Blending two textures that differ lowers their contrast, and moving the previous one by a
//! fraction of a pixel softens it; [`restore_contrast`] gives the finest band back its
//! local energy from the model's own frame.

use super::flow::Flow;
use super::plane::{cubic_weights, Plane};
use rayon::prelude::*;
use vsr_runtime::Tensor;

/// `source` (RGB) enlarged `scale` times by separable cubic interpolation, pixel centres
/// aligned (output pixel `x` samples the source at `(x + 0.5) / scale - 0.5`).
pub fn base(source: &Tensor, scale: usize) -> Tensor {
    let (w, h) = (source.w, source.h);
    // One set of taps per output phase: the first tap's offset and the weights.
    let taps: Vec<(isize, [f32; 4])> = (0..scale)
        .map(|phase| {
            let at = (phase as f32 + 0.5) / scale as f32 - 0.5;
            let first = at.floor();
            (first as isize - 1, cubic_weights(at - first))
        })
        .collect();
    let clamp = |i: isize, n: usize| i.clamp(0, n as isize - 1) as usize;
    // Rows first: h rows of scale * w pixels.
    let wide = scale * w;
    let mut rows = vec![0.0f32; h * wide * 3];
    rows.par_chunks_mut(wide * 3)
        .zip(source.data.par_chunks(w * 3))
        .for_each(|(row, src)| {
            for (x, px) in row.chunks_exact_mut(3).enumerate() {
                let (offset, weights) = taps[x % scale];
                let first = (x / scale) as isize + offset;
                for (k, weight) in weights.iter().enumerate() {
                    let s = clamp(first + k as isize, w) * 3;
                    for (p, v) in px.iter_mut().zip(&src[s..s + 3]) {
                        *p += weight * v;
                    }
                }
            }
        });
    let mut out = Tensor::zeros(scale * h, wide, 3);
    out.data
        .par_chunks_mut(wide * 3)
        .enumerate()
        .for_each(|(y, row)| {
            let (offset, weights) = taps[y % scale];
            let first = (y / scale) as isize + offset;
            for (k, weight) in weights.iter().enumerate() {
                let src = &rows[clamp(first + k as isize, h) * wide * 3..][..wide * 3];
                for (o, s) in row.iter_mut().zip(src) {
                    *o += weight * s;
                }
            }
        });
    out
}

/// The RGB value of `t` at a fractional position, Catmull-Rom in both directions, the edges
/// repeated outwards.
fn sample_cubic(t: &Tensor, x: f32, y: f32) -> [f32; 3] {
    let (fx, fy) = (x.floor(), y.floor());
    let (wx, wy) = (cubic_weights(x - fx), cubic_weights(y - fy));
    let (x0, y0) = (fx as isize - 1, fy as isize - 1);
    // The four columns, the edges repeated (one test for the common, inner case).
    let columns: [usize; 4] = if x0 >= 0 && x0 + 3 < t.w as isize {
        std::array::from_fn(|i| x0 as usize + i)
    } else {
        std::array::from_fn(|i| (x0 + i as isize).clamp(0, t.w as isize - 1) as usize)
    };
    let mut value = [0.0; 3];
    for (j, wj) in wy.iter().enumerate() {
        let row = (y0 + j as isize).clamp(0, t.h as isize - 1) as usize * t.w;
        let mut line = [0.0; 3];
        for (column, wi) in columns.iter().zip(&wx) {
            let at = (row + column) * 3;
            for (l, v) in line.iter_mut().zip(&t.data[at..at + 3]) {
                *l += wi * v;
            }
        }
        for (v, l) in value.iter_mut().zip(&line) {
            *v += wj * l;
        }
    }
    value
}

/// How the previous detail is blended into the current.
pub struct Blend<'a> {
    /// Motion of the source, in source pixels.
    pub flow: &'a Flow,
    /// Per source pixel, 0..1: how much the source says the content is the same.
    pub trust: &'a Plane,
    /// Output pixels per source pixel.
    pub scale: usize,
    /// Share of the previous detail in a fully trusted pixel.
    pub history: f32,
    /// A detail difference (0..1, any channel) from which a pixel counts as new content; the
    /// blend fades out from half of it.
    pub changed: f32,
}

impl Blend<'_> {
    /// Blends `previous` (moved by the flow) into `detail`, in place.
    pub fn apply(&self, detail: &mut Tensor, previous: &Tensor) {
        let (w, s) = (detail.w, self.scale as f32);
        // Where each output column and row falls between source pixels, once.
        let columns = Taps::new(w, self.scale, self.trust.w);
        let rows = Taps::new(detail.h, self.scale, self.trust.h);
        detail
            .data
            .par_chunks_mut(w * 3)
            .enumerate()
            .for_each(|(y, row)| {
                let down = rows.0[y];
                for (x, px) in row.chunks_exact_mut(3).enumerate() {
                    let across = columns.0[x];
                    let trust = down.sample(self.trust, across);
                    if trust <= 0.0 {
                        continue;
                    }
                    let (dx, dy) = (
                        down.sample(&self.flow.dx, across),
                        down.sample(&self.flow.dy, across),
                    );
                    let p = sample_cubic(previous, x as f32 + dx * s, y as f32 + dy * s);
                    let diff = px
                        .iter()
                        .zip(&p)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0, f32::max);
                    let agree = ((self.changed - diff) / (0.5 * self.changed)).clamp(0.0, 1.0);
                    let weight = self.history * trust * agree;
                    for (a, b) in px.iter_mut().zip(&p) {
                        *a += weight * (b - *a);
                    }
                }
            });
    }
}

/// The two source pixels an output pixel falls between along one axis, and how far past the
/// first (output pixel `x` sits at source `(x + 0.5) / scale - 0.5`), the edges repeated.
#[derive(Debug, Clone, Copy)]
struct Tap {
    first: usize,
    second: usize,
    t: f32,
}

impl Tap {
    /// Bilinear sampling of `plane`, `self` being the row tap.
    fn sample(self, plane: &Plane, column: Tap) -> f32 {
        let (top, bottom) = (
            &plane.data[self.first * plane.w..],
            &plane.data[self.second * plane.w..],
        );
        let upper = top[column.first] + column.t * (top[column.second] - top[column.first]);
        let lower =
            bottom[column.first] + column.t * (bottom[column.second] - bottom[column.first]);
        upper + self.t * (lower - upper)
    }
}

/// One [`Tap`] per output position along an axis.
struct Taps(Vec<Tap>);

impl Taps {
    fn new(outputs: usize, scale: usize, sources: usize) -> Taps {
        let last = sources.saturating_sub(1) as f32;
        Taps(
            (0..outputs)
                .map(|o| {
                    let at = ((o as f32 + 0.5) / scale as f32 - 0.5).clamp(0.0, last);
                    let first = at as usize;
                    Tap {
                        first,
                        second: (first + 1).min(sources - 1),
                        t: at - first as f32,
                    }
                })
                .collect(),
        )
    }
}

/// Radius of the window over which the finest band's energy is compared.
const ENERGY_RADIUS: usize = 3;
/// The share of the model's band energy given back: the model's includes its flicker, which
/// the blend rightly took out.
const CONTRAST_TARGET: f32 = 0.9;
/// The most the finest band is amplified.
const MAX_GAIN: f32 = 3.0;

/// The finest band of an RGB frame (the frame minus its [1 2 1]/4 blur in both directions),
/// and that band's energy summed over the channels and a window.
fn finest_band(t: &Tensor) -> (Vec<f32>, Plane) {
    let (w, h, row) = (t.w, t.h, t.w * 3);
    // Across (on interleaved RGB a neighbour is 3 values away), the edges repeated.
    let mut across = vec![0.0; t.data.len()];
    across
        .par_chunks_mut(row)
        .zip(t.data.par_chunks(row))
        .for_each(|(dst, src)| {
            for (i, d) in dst.iter_mut().enumerate() {
                let before = if i >= 3 { i - 3 } else { i };
                let after = if i + 3 < row { i + 3 } else { i };
                *d = 0.25 * src[before] + 0.5 * src[i] + 0.25 * src[after];
            }
        });
    // Then down, and the band is what the blur took away.
    let mut band = vec![0.0; t.data.len()];
    let mut energy = vec![0.0; w * h];
    band.par_chunks_mut(row)
        .zip(energy.par_chunks_mut(w))
        .enumerate()
        .for_each(|(y, (dst, e))| {
            let up = &across[y.saturating_sub(1) * row..][..row];
            let mid = &across[y * row..][..row];
            let down = &across[(y + 1).min(h - 1) * row..][..row];
            let src = &t.data[y * row..][..row];
            for ((((d, s), u), m), n) in dst.iter_mut().zip(src).zip(up).zip(mid).zip(down) {
                *d = s - (0.25 * u + 0.5 * m + 0.25 * n);
            }
            for (e, p) in e.iter_mut().zip(dst.chunks_exact(3)) {
                *e = p[0] * p[0] + p[1] * p[1] + p[2] * p[2];
            }
        });
    (band, Plane::new(w, h, energy).box_sum(ENERGY_RADIUS))
}

/// Gives `frame`'s finest band back (most of) the local energy it has in the model's frame,
/// where blending lowered it; never lowers it.
pub fn restore_contrast(frame: &mut Tensor, drawn_energy: &Plane) {
    let (band, energy) = finest_band(frame);
    const FLOOR: f32 = 1e-7;
    frame
        .data
        .par_chunks_mut(3)
        .zip(band.par_chunks(3))
        .zip(energy.data.par_iter().zip(drawn_energy.data.par_iter()))
        .for_each(|((px, b), (e, drawn))| {
            let gain = ((CONTRAST_TARGET * drawn + FLOOR) / (e + FLOOR))
                .sqrt()
                .clamp(1.0, MAX_GAIN);
            for (p, v) in px.iter_mut().zip(b) {
                *p += (gain - 1.0) * v;
            }
        });
}

/// The local energy of the finest band of the model's frame, for [`restore_contrast`].
pub fn band_energy(drawn: &Tensor) -> Plane {
    finest_band(drawn).1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RGB frame from one value per pixel.
    fn grey(w: usize, h: usize, value: impl Fn(usize, usize) -> f32) -> Tensor {
        let mut t = Tensor::zeros(h, w, 3);
        for y in 0..h {
            for x in 0..w {
                t.data[(y * w + x) * 3..][..3].fill(value(x, y));
            }
        }
        t
    }

    #[test]
    fn cubic_base_keeps_linear_content() {
        let up = base(&grey(8, 6, |x, _| 0.1 + 0.05 * x as f32), 2);
        assert_eq!((up.w, up.h), (16, 12));
        // Inside, a ramp stays a ramp: pixel x samples source (x + 1/2) / 2 - 1/2.
        for x in 3..12 {
            let want = 0.1 + 0.05 * ((x as f32 + 0.5) / 2.0 - 0.5);
            let got = up.data[(5 * 16 + x) * 3];
            assert!((got - want).abs() < 1e-5, "{x}: {got} vs {want}");
        }
    }

    #[test]
    fn restoring_contrast_undoes_a_halving() {
        let checker = |amplitude: f32| {
            grey(16, 16, |x, y| {
                0.5 + if (x + y) % 2 == 0 {
                    amplitude
                } else {
                    -amplitude
                }
            })
        };
        let (drawn, mut halved) = (checker(0.1), checker(0.05));
        restore_contrast(&mut halved, &band_energy(&drawn));
        // Up to the share of the energy given back (inside: the edges blur differently).
        let want = checker(0.1 * CONTRAST_TARGET.sqrt());
        let mut worst: f32 = 0.0;
        for y in 1..15 {
            for x in 1..15 {
                let i = (y * 16 + x) * 3;
                worst = worst.max((halved.data[i] - want.data[i]).abs());
            }
        }
        assert!(worst < 0.01, "{worst}");
    }
}
