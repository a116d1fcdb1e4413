//! The output-resolution half of the stabiliser. A frame is split into a *base*, the source
//! upscaled by plain Lanczos-3 interpolation, and the *detail* the model adds on top of it (in
//! every channel: stabilising luma alone leaves most of the flicker, the models' colour
//! fringes shimmer too). Only the detail is blended over time: the base follows the source
//! exactly, so real change (motion, fades, lighting) is never held back, while the texture the
//! model redraws differently in every frame is kept consistent.
//!
//! Blending two textures that differ lowers their contrast, and moving the previous one by a
//! fraction of a pixel softens it; [`restore_contrast`] gives the finest band back its
//! local energy from the model's own frame.
//!
//! Every pass here touches each output pixel once, in row order, in parallel over rows, with
//! the inner loops compiled for the CPU's vector instructions: at 1080p a frame is 25 MB of
//! floats, so the number of passes over it is the stabiliser's cost.

use super::flow::Flow;
use super::plane::{band_box_sums, box_sum_of, cubic_sample, BandSums, Plane, BAND};
use super::taps::Taps;
use crate::resample::lanczos;
use rayon::prelude::*;
use vsr_runtime::{dispatch, Isa, Tensor};

/// Where output pixel `o` sits in the source, pixel centres aligned: the base and the blend
/// must agree on it.
fn source_position(o: usize, scale: usize) -> f32 {
    (o as f32 + 0.5) / scale as f32 - 0.5
}

/// Taps of the base's filter, per axis.
const BASE_TAPS: usize = 6;
/// Source pixels a tap reaches past the one it is centred on, at most.
const EDGE: usize = BASE_TAPS / 2;

/// The weights of Lanczos-3's six taps for a position `t` (0..1) past the third,
/// normalised so that flat content stays flat.
fn lanczos3_weights(t: f32) -> [f32; BASE_TAPS] {
    let mut weights: [f32; BASE_TAPS] =
        std::array::from_fn(|k| lanczos(f64::from(t) + 2.0 - k as f64) as f32);
    let sum: f32 = weights.iter().sum();
    weights.iter_mut().for_each(|w| *w /= sum);
    weights
}

/// A frame's base: `source` (RGB) enlarged `scale` times by separable Lanczos-3
/// interpolation, pixel centres aligned ([`source_position`]), made a row at a time where a
/// pass needs it. Lanczos rather than cubic: the stabiliser holds the detail still, so the
/// flicker left is the base's own (the source's aliasing, enlarged), and Lanczos-3 follows
/// a bicubically downscaled truth closer (on Big Buck Bunny at 2x, with the benchmark's own
/// motion in place of ours, `tools/stabiliser_bound.py`, the flicker left fell from 0.51
/// to 0.45 of the model's). The source's rows are widened once per frame; an output row is
/// then six of them mixed, from cache, which costs less than writing a frame of base
/// (25 MB at 1080p) and reading it back in every pass that uses it.
pub struct Base<'a> {
    isa: Isa,
    /// The source's `h` rows widened to `wide` pixels (RGB).
    rows: &'a [f32],
    /// One set of taps per output phase: the first tap's offset and the weights.
    taps: Vec<(isize, [f32; BASE_TAPS])>,
    /// Source rows.
    h: usize,
    /// Output pixels per row.
    wide: usize,
}

impl<'a> Base<'a> {
    /// Widens `source`'s rows into `rows` (the caller keeps it between frames: a steady run
    /// allocates nothing frame-sized, only two source rows' worth per worker job).
    pub fn new(isa: Isa, source: &Tensor, scale: usize, rows: &'a mut Vec<f32>) -> Base<'a> {
        let (w, h) = (source.w, source.h);
        let taps: Vec<(isize, [f32; BASE_TAPS])> = (0..scale)
            .map(|phase| {
                let at = source_position(phase, scale);
                let first = at.floor();
                (first as isize - 2, lanczos3_weights(at - first))
            })
            .collect();
        // h rows of scale * w pixels, every value written (no clearing needed).
        let wide = scale * w;
        rows.resize(h * wide * 3, 0.0);
        // Per source row: the row with its edge pixels repeated outwards (every tap reads
        // inside it), then one phase at a time, a run of the row's values (all of them, the
        // channels side by side) mixed with the phase's taps as six shifted copies, which
        // vectorises; each phase's pixels go to every `scale`-th output pixel.
        rows.par_chunks_mut(wide * 3)
            .zip(source.data.par_chunks(w * 3))
            .for_each_init(
                || (vec![0.0; (w + 2 * EDGE) * 3], vec![0.0; w * 3]),
                |(padded, phase_row), (row, src)| {
                    let (first, last) = (&src[..3], &src[(w - 1) * 3..]);
                    let (before, rest) = padded.split_at_mut(EDGE * 3);
                    let (inside, after) = rest.split_at_mut(w * 3);
                    before
                        .chunks_exact_mut(3)
                        .for_each(|p| p.copy_from_slice(first));
                    inside.copy_from_slice(src);
                    after
                        .chunks_exact_mut(3)
                        .for_each(|p| p.copy_from_slice(last));
                    for (phase, (offset, weights)) in taps.iter().enumerate() {
                        let start = (EDGE as isize + offset) as usize * 3;
                        let line = |k: usize| &padded[start + 3 * k..][..w * 3];
                        mix6(isa, weights, std::array::from_fn(line), phase_row);
                        for (pixels, value) in row
                            .chunks_exact_mut(3 * scale)
                            .zip(phase_row.chunks_exact(3))
                        {
                            pixels[phase * 3..][..3].copy_from_slice(value);
                        }
                    }
                },
            );
        Base {
            isa,
            rows,
            taps,
            h,
            wide,
        }
    }

    /// Output pixels per source pixel.
    pub fn scale(&self) -> usize {
        self.taps.len()
    }

    /// Output row `y` of the base (`wide * 3` values) into `out`.
    pub fn row(&self, y: usize, out: &mut [f32]) {
        let scale = self.scale();
        let (offset, weights) = self.taps[y % scale];
        let first = (y / scale) as isize + offset;
        let len = self.wide * 3;
        let line = |k: usize| &self.rows[clamp(first + k as isize, self.h) * len..][..len];
        mix6(
            self.isa,
            &weights,
            std::array::from_fn(line),
            &mut out[..len],
        );
    }

    /// `frame`'s detail (the frame minus this base), written over `buffer`.
    pub fn detail_of(&self, frame: &Tensor, mut buffer: Vec<f32>) -> Tensor {
        let row = frame.w * 3;
        // Every value is written below: the buffer's old contents need no clearing.
        buffer.resize(frame.data.len(), 0.0);
        let mut detail = Tensor::from_vec(frame.h, frame.w, 3, buffer);
        detail
            .data
            .par_chunks_mut(row)
            .zip(frame.data.par_chunks(row))
            .enumerate()
            .for_each_init(
                || vec![0.0; row],
                |base, (y, (d, f))| {
                    self.row(y, base);
                    dispatch!(self.isa, {
                        for ((d, f), b) in d.iter_mut().zip(f).zip(&*base) {
                            *d = f - b;
                        }
                    })
                },
            );
        detail
    }
}

/// `out` as the weighted sum of six `lines` of its length: the base's taps, along a row
/// or across rows.
fn mix6(isa: Isa, weights: &[f32; BASE_TAPS], lines: [&[f32]; BASE_TAPS], out: &mut [f32]) {
    let n = out.len();
    let [a, b, c, d, e, f] = lines.map(|line| &line[..n]);
    dispatch!(isa, {
        for (x, o) in out.iter_mut().enumerate() {
            *o = weights[0] * a[x]
                + weights[1] * b[x]
                + weights[2] * c[x]
                + weights[3] * d[x]
                + weights[4] * e[x]
                + weights[5] * f[x];
        }
    })
}

/// `i` clamped to `0..n`: the edge repeated outwards.
fn clamp(i: isize, n: usize) -> usize {
    i.clamp(0, n as isize - 1) as usize
}

/// How the previous detail is blended into the current frame.
pub struct Blend<'a> {
    /// The instruction set the inner loops run with.
    pub isa: Isa,
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
    /// Blends `previous` (a detail layer, moved by the flow) into the detail of `frame`
    /// (`frame` minus `base`), in place: the base stays as it is.
    pub fn apply(&self, frame: &mut Tensor, base: &Base, previous: &Tensor) {
        let (w, s) = (frame.w, self.scale as f32);
        let fade = 2.0 / self.changed;
        // Where each output column and row falls between source pixels, once.
        let at = |o| source_position(o, self.scale);
        let columns = Taps::at(w, self.trust.w, at);
        let rows = Taps::at(frame.h, self.trust.h, at);
        frame.data.par_chunks_mut(w * 3).enumerate().for_each_init(
            || Row::new(w, self.trust.w),
            |scratch, (y, row)| {
                // The source-sized planes at this row's height, then per pixel: the
                // trust, and where its previous self was.
                let planes = [self.trust, &self.flow.dx, &self.flow.dy];
                for (line, plane) in scratch.lines.iter_mut().zip(planes) {
                    rows.tap(y).mix_rows(plane, line);
                }
                let [trusts, dxs, dys] = &scratch.lines;
                columns.mix_line(self.isa, trusts, &mut scratch.trust);
                columns.mix_line(self.isa, dxs, &mut scratch.xs);
                columns.mix_line(self.isa, dys, &mut scratch.ys);
                // Columns counted in u32 (frames are far narrower), which converts to float
                // sixteen at a time; a usize does not.
                let at_row = y as f32;
                dispatch!(self.isa, {
                    for (x, (at_x, at_y)) in
                        (0..w as u32).zip(scratch.xs.iter_mut().zip(&mut scratch.ys))
                    {
                        *at_x = x as f32 + s * *at_x;
                        *at_y = at_row + s * *at_y;
                    }
                });
                scratch.warp(self.isa, previous);
                base.row(y, &mut scratch.base);
                dispatch!(self.isa, {
                    for (((px, b), trust), moved) in row
                        .chunks_exact_mut(3)
                        .zip(scratch.base.chunks_exact(3))
                        .zip(&scratch.trust)
                        .zip(&scratch.moved)
                    {
                        // No branch on the trust, so that the loop vectorises: an
                        // untrusted pixel's weight is zero, and its (stale) moved
                        // detail, finite, changes nothing.
                        let detail: [f32; 3] = std::array::from_fn(|c| px[c] - b[c]);
                        let diff = (detail[0] - moved[0])
                            .abs()
                            .max((detail[1] - moved[1]).abs())
                            .max((detail[2] - moved[2]).abs());
                        let agree = ((self.changed - diff) * fade).clamp(0.0, 1.0);
                        let weight = self.history * trust * agree;
                        for ((p, d), m) in px.iter_mut().zip(&detail).zip(moved) {
                            *p += weight * (m - d);
                        }
                    }
                })
            },
        );
    }
}

/// One output row's scratch for [`Blend::apply`], reused row after row by a worker.
struct Row {
    /// The trust and the motion (source-sized planes) interpolated to this row's height.
    lines: [Vec<f32>; 3],
    /// Per pixel, how much the source says the content is the same.
    trust: Vec<f32>,
    /// Per pixel, where it was in the previous frame (output pixels).
    xs: Vec<f32>,
    ys: Vec<f32>,
    /// Per pixel, the previous detail there.
    moved: Vec<[f32; 3]>,
    /// The base's row (RGB).
    base: Vec<f32>,
}

impl Row {
    fn new(w: usize, source_w: usize) -> Row {
        Row {
            lines: std::array::from_fn(|_| vec![0.0; source_w]),
            trust: vec![0.0; w],
            xs: vec![0.0; w],
            ys: vec![0.0; w],
            moved: vec![[0.0; 3]; w],
            base: vec![0.0; w * 3],
        }
    }

    /// Samples `previous` at every trusted pixel's earlier place: sixteen at a time where the
    /// CPU has AVX-512 (sixteen untrusted pixels skipped together), the rest one by one.
    /// Untrusted pixels keep stale values: the blend leaves them alone.
    fn warp(&mut self, isa: Isa, previous: &Tensor) {
        let (w, h, data) = (previous.w, previous.h, &previous.data);
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if isa.level() == vsr_runtime::IsaLevel::Avx512 {
            // SAFETY: the Isa says the CPU has AVX-512F; `previous` is a whole frame (the
            // caller checked its size against this one's); the row's buffers are `w` long.
            done = unsafe {
                super::gather::sample_trusted(
                    data,
                    w,
                    h,
                    &self.xs,
                    &self.ys,
                    &self.trust,
                    &mut self.moved,
                )
            };
        }
        dispatch!(isa, {
            for (((m, x), y), trust) in self.moved[done..]
                .iter_mut()
                .zip(&self.xs[done..])
                .zip(&self.ys[done..])
                .zip(&self.trust[done..])
            {
                if *trust > 0.0 {
                    *m = cubic_sample(data, w, h, *x, *y);
                }
            }
        })
    }
}

/// Radius of the window over which the finest band's energy is compared.
const ENERGY_RADIUS: usize = 3;
/// The share of the model's finest-band energy given back at an upscale of `scale`: not all
/// of it, since the model's includes its flicker, which the blend rightly took out. More at
/// 3x and above, where the model's texture is coarser against the output's pixels, so the
/// finest band holds less of it and the blend's losses are given back less: with 0.9 there,
/// Big Buck Bunny at 4x kept 0.905-0.947 of its detail (at 2x 0.947-0.974). 0.97 keeps
/// 0.931-0.987 at 4x on the quality benchmark's clips; 1.0 reaches 0.942-0.996 but costs
/// carphone's quality preset at 4x 0.198 dB of PSNR-Y (the bar is 0.2), and at 2x
/// carphone's fast preset has no PSNR-Y to spare (docs/benchmarks.md, "More contrast given
/// back at 4x"). 3x and 8x were not measured; they follow 4x.
fn contrast_target(scale: usize) -> f32 {
    if scale >= 3 {
        0.97
    } else {
        0.9
    }
}
/// The most the finest band is amplified.
const MAX_GAIN: f32 = 3.0;
/// Added to both energies the gain compares: flat regions (no energy) keep a gain of one.
const FLOOR: f32 = 1e-7;

/// Row `y` of the finest band of an RGB frame: the frame minus its [1 2 1]/4 blur in both
/// directions (on interleaved RGB a neighbour is 3 values away), the edges repeated. `column`
/// is scratch for the vertical blur, so that both passes run over plain slices and vectorise.
#[inline(always)]
fn band_row(t: &Tensor, y: usize, column: &mut [f32], band: &mut [f32]) {
    let row = t.w * 3;
    let up = &t.data[y.saturating_sub(1) * row..][..row];
    let mid = &t.data[y * row..][..row];
    let down = &t.data[(y + 1).min(t.h - 1) * row..][..row];
    for (((c, u), m), d) in column.iter_mut().zip(up).zip(mid).zip(down) {
        *c = 0.25 * u + 0.5 * m + 0.25 * d;
    }
    if row < 6 {
        // One pixel: its neighbours are itself.
        for ((b, m), c) in band.iter_mut().zip(mid).zip(&*column) {
            *b = m - c;
        }
        return;
    }
    let inner = 3..row - 3;
    for ((((b, m), before), c), after) in band[inner.clone()]
        .iter_mut()
        .zip(&mid[inner])
        .zip(&column[..row - 6])
        .zip(&column[3..row - 3])
        .zip(&column[6..])
    {
        *b = m - (0.25 * before + 0.5 * c + 0.25 * after);
    }
    // The first and last pixels repeat themselves outwards.
    for i in (0..3).chain(row - 3..row) {
        let (before, after) = if i < 3 { (i, i + 3) } else { (i - 3, i) };
        band[i] = mid[i] - (0.25 * column[before] + 0.5 * column[i] + 0.25 * column[after]);
    }
}

/// Row `y` of the finest band's energy of an RGB frame (summed over the channels), before the
/// window's sum; `scratch` is [`band_row`]'s two rows.
fn energy_row(
    isa: Isa,
    t: &Tensor,
    (column, band): &mut (Vec<f32>, Vec<f32>),
    y: usize,
    e: &mut [f32],
) {
    dispatch!(isa, {
        band_row(t, y, column, band);
        for (e, p) in e.iter_mut().zip(band.chunks_exact(3)) {
            *e = p[0] * p[0] + p[1] * p[1] + p[2] * p[2];
        }
    })
}

/// [`energy_row`]'s scratch for a frame `w` pixels wide.
fn energy_scratch(w: usize) -> (Vec<f32>, Vec<f32>) {
    (vec![0.0; w * 3], vec![0.0; w * 3])
}

/// The local energy of the finest band of an RGB frame, summed over the channels and a
/// window: what [`restore_contrast`] compares. Written over `into` (a buffer to reuse).
pub fn band_energy(isa: Isa, t: &Tensor, into: Vec<f32>) -> Plane {
    box_sum_of(
        isa,
        t.w,
        t.h,
        ENERGY_RADIUS,
        into,
        || energy_scratch(t.w),
        |scratch, y, e| energy_row(isa, t, scratch, y, e),
    )
}

/// `frame` with its finest band given back (most of) the local energy it has in the model's
/// frame (`drawn_energy`, from [`band_energy`]) where blending lowered it (never lowered). In
/// the same pass, the next frame's history: the restored frame's detail over `base`. Both
/// are written over `buffers`; returns the frame and the history.
///
/// The frame's own band energy is made here, a band of rows at a time ([`band_box_sums`]):
/// each row is restored as soon as its window's sum is complete, so the energy is never
/// stored as a plane and read back.
///
/// The history keeps all of the contrast given back: keeping less lets it soften frame after
/// frame (each move by a fraction of a pixel blurs it a little), and the gain is set from
/// the drawn frame's own energy each time, so nothing builds up over a still shot. Keeping
/// 0.7 of it instead cost 1-2% of the detail on every clip and preset of the quality
/// benchmark, for 0.03-0.1 dB of PSNR-Y and no less flicker.
pub fn restore_contrast(
    isa: Isa,
    frame: &Tensor,
    drawn_energy: &Plane,
    base: &Base,
    [mut buffer, mut history_buffer]: [Vec<f32>; 2],
) -> (Tensor, Tensor) {
    let (w, h) = (frame.w, frame.h);
    let target = contrast_target(base.scale());
    let row = w * 3;
    // Every value is written below: the buffers' old contents need no clearing.
    buffer.resize(frame.data.len(), 0.0);
    history_buffer.resize(frame.data.len(), 0.0);
    let mut out = Tensor::from_vec(h, w, 3, buffer);
    let mut history = Tensor::from_vec(h, w, 3, history_buffer);
    if w == 0 {
        return (out, history);
    }
    out.data
        .par_chunks_mut(BAND * row)
        .zip(history.data.par_chunks_mut(BAND * row))
        .enumerate()
        .for_each_init(
            || {
                let scratch = (vec![0.0; row], vec![0.0; row], vec![0.0; row]);
                (BandSums::default(), energy_scratch(w), scratch)
            },
            |(sums, energy_rows, (column, band, base_row)), (index, (dst, history))| {
                let rows = index * BAND..index * BAND + dst.len() / row;
                let row_energy =
                    |scratch: &mut _, y, e: &mut [f32]| energy_row(isa, frame, scratch, y, e);
                band_box_sums(
                    isa,
                    w,
                    h,
                    ENERGY_RADIUS,
                    rows,
                    sums,
                    energy_rows,
                    row_energy,
                    |y, energy| {
                        let at = (y % BAND) * row..(y % BAND + 1) * row;
                        let (dst, history) = (&mut dst[at.clone()], &mut history[at]);
                        let drawn = &drawn_energy.data[y * w..][..w];
                        let src = &frame.data[y * row..][..row];
                        base.row(y, base_row);
                        dispatch!(isa, {
                            band_row(frame, y, column, band);
                            for ((((((d, h), s), b), e), drawn), base) in dst
                                .chunks_exact_mut(3)
                                .zip(history.chunks_exact_mut(3))
                                .zip(src.chunks_exact(3))
                                .zip(band.chunks_exact(3))
                                .zip(energy)
                                .zip(drawn)
                                .zip(base_row.chunks_exact(3))
                            {
                                let gain = ((target * drawn + FLOOR) / (e + FLOOR))
                                    .sqrt()
                                    .clamp(1.0, MAX_GAIN);
                                for ((((d, h), s), b), base) in
                                    d.iter_mut().zip(h).zip(s).zip(b).zip(base)
                                {
                                    *d = s + (gain - 1.0) * b;
                                    *h = *d - base;
                                }
                            }
                        })
                    },
                );
            },
        );
    (out, history)
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

    /// The base is Lanczos-3 by its definition (each output pixel the weighted sum of 6x6
    /// source pixels, edges repeated) at every scale; buffers left dirty by earlier (larger)
    /// frames are written over, not added to.
    #[test]
    fn base_is_lanczos3_of_the_source() {
        let taps = |o: usize, scale: usize| {
            let at = source_position(o, scale);
            let first = at.floor();
            let weights = lanczos3_weights(at - first);
            (0..BASE_TAPS).map(move |k| {
                (
                    (first as isize - 2 + k as isize).max(0) as usize,
                    weights[k],
                )
            })
        };
        // Frames narrower and shorter than the filter too: every tap past an edge repeats it.
        for (w, h) in [(9, 7), (1, 1), (2, 3)] {
            let mut source = Tensor::zeros(h, w, 3);
            for (i, v) in source.data.iter_mut().enumerate() {
                *v = ((i * 37 % 23) as f32) / 23.0;
            }
            for scale in [2, 3, 4] {
                let mut rows = vec![9.0; 5000];
                let base = Base::new(Isa::detect(), &source, scale, &mut rows);
                let mut row = vec![7.0; w * scale * 3];
                for y in 0..h * scale {
                    base.row(y, &mut row);
                    for x in 0..w * scale {
                        for c in 0..3 {
                            let mut want = 0.0;
                            for (sy, wy) in taps(y, scale) {
                                for (sx, wx) in taps(x, scale) {
                                    let (sy, sx) = (sy.min(h - 1), sx.min(w - 1));
                                    want += wy * wx * source.data[(sy * w + sx) * 3 + c];
                                }
                            }
                            let got = row[x * 3 + c];
                            assert!(
                                (got - want).abs() < 1e-5,
                                "{w}x{h} at {scale}x, {y},{x}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Flat content stays flat, and a frame's detail is what lies over the base: the base
    /// itself has none.
    #[test]
    fn the_base_has_no_detail() {
        let mut rows = Vec::new();
        let source = grey(8, 6, |_, _| 0.4);
        let base = Base::new(Isa::detect(), &source, 2, &mut rows);
        let detail = base.detail_of(&grey(16, 12, |_, _| 0.4), vec![5.0; 10]);
        assert_eq!((detail.w, detail.h), (16, 12));
        assert!(detail.data.iter().all(|d| d.abs() < 1e-6));
    }

    /// The restore pass makes the frame's band energy band by band as it goes; what comes out
    /// is what the whole plane's energy ([`band_energy`]) and the formula give, with the
    /// scale's target, to the bit, over several bands of rows (the last one partial) and
    /// gains above one and at one.
    #[test]
    fn restore_follows_its_definition() {
        let isa = Isa::detect();
        let (w, h) = (24, 72);
        // The drawn frame has less texture than the frame on the left, more on the right.
        let pattern = |seed: usize, left: f32, right: f32| {
            let mut t = Tensor::zeros(h, w, 3);
            for (i, v) in t.data.iter_mut().enumerate() {
                let amplitude = if (i / 3) % w < w / 2 { left } else { right };
                *v = 0.5 + amplitude * (((i * seed) % 101) as f32 / 101.0 - 0.5);
            }
            t
        };
        let (frame, drawn) = (pattern(37, 0.2, 0.2), pattern(53, 0.05, 0.6));
        let drawn_energy = band_energy(isa, &drawn, Vec::new());
        let energy = band_energy(isa, &frame, Vec::new());
        assert_ne!(contrast_target(2), contrast_target(4));
        for scale in [2, 3, 4] {
            let mut source = Tensor::zeros(h / scale, w / scale, 3);
            for (i, v) in source.data.iter_mut().enumerate() {
                *v = ((i * 29) % 31) as f32 / 31.0;
            }
            let mut rows = Vec::new();
            let base = Base::new(isa, &source, scale, &mut rows);
            let buffers = [vec![1.0; 5], Vec::new()];
            let (out, history) = restore_contrast(isa, &frame, &drawn_energy, &base, buffers);

            let (mut column, mut band, mut base_row) =
                (vec![0.0; w * 3], vec![0.0; w * 3], vec![0.0; w * 3]);
            let mut raised = 0;
            for y in 0..h {
                band_row(&frame, y, &mut column, &mut band);
                base.row(y, &mut base_row);
                for x in 0..w {
                    let at = y * w + x;
                    let gain = ((contrast_target(scale) * drawn_energy.data[at] + FLOOR)
                        / (energy.data[at] + FLOOR))
                        .sqrt()
                        .clamp(1.0, MAX_GAIN);
                    raised += usize::from(gain > 1.0);
                    for c in 0..3 {
                        let want = frame.data[at * 3 + c] + (gain - 1.0) * band[x * 3 + c];
                        assert_eq!(out.data[at * 3 + c], want, "{scale}x: {x},{y},{c}");
                        assert_eq!(history.data[at * 3 + c], want - base_row[x * 3 + c]);
                    }
                }
            }
            assert!(raised > w * h / 4 && raised < w * h, "{raised}");
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
        let (drawn, halved) = (checker(0.1), checker(0.05));
        let isa = Isa::detect();
        let mut rows = Vec::new();
        let base = Base::new(isa, &Tensor::zeros(8, 8, 3), 2, &mut rows);
        let (halved, _) = restore_contrast(
            isa,
            &halved,
            &band_energy(isa, &drawn, vec![3.0; 7]),
            &base,
            [Vec::new(), Vec::new()],
        );
        // Up to the share of the energy given back (inside: the edges blur differently).
        let want = checker(0.1 * contrast_target(2).sqrt());
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
