//! One-channel float images and the few filters the stabiliser needs on them: cubic
//! sampling, halving for a pyramid, and box sums over a square window.

use rayon::prelude::*;
use vsr_runtime::{dispatch, Isa, Tensor};

/// A one-channel image, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Plane {
    pub w: usize,
    pub h: usize,
    pub data: Vec<f32>,
}

impl Plane {
    pub fn new(w: usize, h: usize, data: Vec<f32>) -> Plane {
        debug_assert_eq!(data.len(), w * h);
        Plane { w, h, data }
    }

    pub fn zeros(w: usize, h: usize) -> Plane {
        Plane::new(w, h, vec![0.0; w * h])
    }

    /// BT.601 luma of an RGB frame.
    pub fn luma(t: &Tensor) -> Plane {
        let mut data = vec![0.0; t.w * t.h];
        data.par_iter_mut()
            .zip(t.data.par_chunks_exact(3))
            .with_min_len(MIN_TASK)
            .for_each(|(y, p)| *y = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]);
        Plane::new(t.w, t.h, data)
    }

    /// The value at a fractional position by cubic interpolation (sharper than bilinear,
    /// whose blur at half-pixel phases would bias a motion search), the edges repeated
    /// outwards.
    #[inline]
    pub fn cubic(&self, x: f32, y: f32) -> f32 {
        cubic_sample::<1>(&self.data, self.w, self.h, x, y)[0]
    }

    /// Half the size (rounded down, at least one pixel), each pixel the mean of four.
    pub fn half(&self) -> Plane {
        let (w, h) = ((self.w / 2).max(1), (self.h / 2).max(1));
        let mut out = Plane::zeros(w, h);
        for y in 0..h {
            let (r0, r1) = ((2 * y).min(self.h - 1), (2 * y + 1).min(self.h - 1));
            for x in 0..w {
                let (c0, c1) = ((2 * x).min(self.w - 1), (2 * x + 1).min(self.w - 1));
                let at = |r: usize, c: usize| self.data[r * self.w + c];
                out.data[y * w + x] = 0.25 * (at(r0, c0) + at(r0, c1) + at(r1, c0) + at(r1, c1));
            }
        }
        out
    }

    /// The sum over the `(2r+1)^2` window around each pixel, the edges repeated outwards
    /// ([`box_sum_of`] this plane's rows).
    pub fn box_sum(&self, isa: Isa, r: usize) -> Plane {
        let w = self.w;
        box_sum_of(
            isa,
            w,
            self.h,
            r,
            Vec::new(),
            || (),
            |_, y, row| row.copy_from_slice(&self.data[y * w..][..w]),
        )
    }
}

/// The least work, in pixels, worth handing to another worker: a hand-off costs a few
/// microseconds, as much as several thousand pixels of these passes take. The motion
/// search's coarse pyramid levels are smaller than that and run on one thread, while the
/// other workers do the passes the stabiliser runs beside the search.
pub const MIN_TASK: usize = 16 * 1024;

/// Rows of a `w`-wide plane per parallel task: [`MIN_TASK`] pixels at least.
pub fn rows_per_task(w: usize) -> usize {
    MIN_TASK.div_ceil(w.max(1))
}

/// Rows per band of [`box_sum_of`] and [`band_box_sums`]: enough that the `2r` extra rows
/// each band sums are cheap. Bands are fixed, so every caller sums in the same order and gets
/// the same values to the bit.
pub const BAND: usize = 32;

/// The sum over the `(2r+1)^2` window around each pixel of a `w x h` plane whose row `y`
/// `row(scratch, y, out)` writes (`init` makes each thread's scratch), the edges repeated
/// outwards. Rows are made where they are summed, so a plane made only to be summed (a
/// product, an energy) is never stored whole. Bands of [`BAND`] rows run in parallel
/// ([`band_box_sums`]). The sums are written over `into` (an earlier plane's buffer, or
/// empty): a frame-sized plane made anew every frame costs its page faults and zeroing every
/// time.
pub fn box_sum_of<S>(
    isa: Isa,
    w: usize,
    h: usize,
    r: usize,
    mut into: Vec<f32>,
    init: impl Fn() -> S + Sync + Send,
    row: impl Fn(&mut S, usize, &mut [f32]) + Sync + Send,
) -> Plane {
    // Every value is written below: the buffer's old contents need no clearing.
    into.resize(w * h, 0.0);
    let mut out = into;
    if w == 0 {
        return Plane::new(w, h, out);
    }
    let bands_per_task = rows_per_task(w).div_ceil(BAND);
    out.par_chunks_mut(BAND * w)
        .enumerate()
        .with_min_len(bands_per_task)
        .for_each_init(
            || (init(), BandSums::default()),
            |(scratch, sums), (band, dst)| {
                let rows = band * BAND..band * BAND + dst.len() / w;
                band_box_sums(isa, w, h, r, rows, sums, scratch, &row, |y, sum| {
                    dst[(y % BAND) * w..][..w].copy_from_slice(sum)
                })
            },
        );
    Plane::new(w, h, out)
}

/// One worker's buffers for [`band_box_sums`], kept from band to band.
#[derive(Default)]
pub struct BandSums {
    /// A row with its edges repeated `r` pixels outwards.
    padded: Vec<f32>,
    /// The band's rows (and `r` either side), summed horizontally.
    sums: Vec<f32>,
    /// The window's sum at the current row.
    running: Vec<f32>,
}

/// [`box_sum_of`]'s work on one band, `rows` (band-aligned: starting at a multiple of
/// [`BAND`], at most that many), each row's sums handed to `each(y, sums)` as soon as they are
/// complete, so that a pass which only needs them row by row does its own work on the row
/// while it is in cache instead of storing a plane and reading it back. Each row (and `r`
/// either side) is summed horizontally by adding `2r + 1` shifted copies, which vectorises
/// where a running sum would be one long chain of dependent adds; a running row of sums then
/// moves down the band, so the vertical cost does not grow with `r`.
///
/// Always inlined, so that `row` and `each` are compiled into the caller's loop (for the
/// caller's vector instructions) rather than called per row through a closure.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn band_box_sums<S>(
    isa: Isa,
    w: usize,
    h: usize,
    r: usize,
    rows: std::ops::Range<usize>,
    buffers: &mut BandSums,
    scratch: &mut S,
    row: impl Fn(&mut S, usize, &mut [f32]),
    mut each: impl FnMut(usize, &[f32]),
) {
    debug_assert!(rows.start.is_multiple_of(BAND) && rows.len() <= BAND && rows.end <= h);
    let (first, n) = (rows.start, rows.len());
    let BandSums {
        padded,
        sums,
        running,
    } = buffers;
    padded.resize(w + 2 * r, 0.0);
    sums.resize((n + 2 * r) * w, 0.0);
    running.resize(w, 0.0);
    dispatch!(isa, {
        // Horizontal sums of rows first - r ..= first + n - 1 + r.
        for (i, sum) in sums.chunks_exact_mut(w).enumerate() {
            let y = (first + i).saturating_sub(r).min(h - 1);
            row(scratch, y, &mut padded[r..r + w]);
            let (left, right) = (padded[r], padded[r + w - 1]);
            padded[..r].fill(left);
            padded[r + w..].fill(right);
            sum.copy_from_slice(&padded[..w]);
            for k in 1..=2 * r {
                for (s, v) in sum.iter_mut().zip(&padded[k..k + w]) {
                    *s += v;
                }
            }
        }
        // Down the band: the first window's rows, then one row in and one out.
        running.copy_from_slice(&sums[..w]);
        for k in 1..=2 * r {
            for (s, v) in running.iter_mut().zip(&sums[k * w..][..w]) {
                *s += v;
            }
        }
        for y in 0..n {
            each(first + y, running);
            if y + 1 < n {
                let entering = &sums[(y + 2 * r + 1) * w..][..w];
                let leaving = &sums[y * w..][..w];
                for ((s, e), l) in running.iter_mut().zip(entering).zip(leaving) {
                    *s += e - l;
                }
            }
        }
    })
}

/// Cubic interpolation ([`cubic_weights`]) of `C` interleaved channels of a `w` x `h` image
/// at a fractional position, the edges repeated outwards. Always inlined: callers compiled for
/// wider vector instructions get it compiled with them.
#[inline(always)]
pub fn cubic_sample<const C: usize>(data: &[f32], w: usize, h: usize, x: f32, y: f32) -> [f32; C] {
    // Past two pixels outside, every tap lands on the edge: clamping there changes nothing,
    // and keeps the coordinates non-negative, so truncation is the floor (no libm call).
    let (x, y) = (x.clamp(-2.0, w as f32), y.clamp(-2.0, h as f32));
    let (ix, iy) = ((x + 2.0) as usize, (y + 2.0) as usize);
    let (wx, wy) = (
        cubic_weights(x + 2.0 - ix as f32),
        cubic_weights(y + 2.0 - iy as f32),
    );
    // The four columns, from `ix - 3` (that is floor(x) - 1), the edges repeated; one test
    // for the common, inner case.
    let columns: [usize; 4] = if ix >= 3 && ix < w {
        std::array::from_fn(|i| ix - 3 + i)
    } else {
        std::array::from_fn(|i| (ix + i).saturating_sub(3).min(w - 1))
    };
    let mut value = [0.0; C];
    for (j, wj) in wy.iter().enumerate() {
        let row = (iy + j).saturating_sub(3).min(h - 1) * w;
        let mut line = [0.0; C];
        for (column, wi) in columns.iter().zip(&wx) {
            let at = (row + column) * C;
            for (l, v) in line.iter_mut().zip(&data[at..at + C]) {
                *l += wi * v;
            }
        }
        for (v, l) in value.iter_mut().zip(&line) {
            *v += wj * l;
        }
    }
    value
}

/// The parameter `a` of the cubic convolution kernel (Keys's family: a tap `|x|` pixels away
/// weighs `(a + 2)|x|³ - (a + 3)|x|² + 1` within one pixel, `a|x|³ - 5a|x|² + 8a|x| - 4a`
/// within two). -0.75 rather than Catmull-Rom's -0.5: more gain near the Nyquist frequency.
/// The stabiliser's history is moved every frame and makes most of each stable pixel, so the
/// softening of every move adds up; on the quality benchmark this kept 1.2-4.3% more detail on
/// every run, the flicker ratio within 0.02, for up to 0.4 dB of PSNR-Y (Catmull-Rom for the
/// motion search alone was no better; -1 overshoots: PSNR-Y down to -0.54 dB).
const KEYS_A: f32 = -0.75;

/// The four taps' weights as polynomials in the fraction `t` past the second tap: per tap,
/// the coefficients of `t³`, `t²`, `t` and 1. Every `t`'s weights sum to 1.
pub const CUBIC: [[f32; 4]; 4] = {
    let a = KEYS_A;
    [
        [a, -2.0 * a, a, 0.0],
        [a + 2.0, -(a + 3.0), 0.0, 1.0],
        [-(a + 2.0), 2.0 * a + 3.0, -a, 0.0],
        [-a, a, 0.0, 0.0],
    ]
};

/// The cubic kernel's weights for the four taps around a sample at fraction `t` past the
/// second.
#[inline(always)]
pub fn cubic_weights(t: f32) -> [f32; 4] {
    CUBIC.map(|[t3, t2, t1, one]| ((t3 * t + t2) * t + t1) * t + one)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Over several bands of rows, and windows wider than the image.
    #[test]
    fn box_sums_match_a_direct_sum() {
        for (w, h, r) in [(5, 4, 1), (9, 70, 3), (3, 40, 5)] {
            let p = Plane::new(w, h, (0..w * h).map(|v| (v * 7 % 11) as f32).collect());
            let sums = p.box_sum(Isa::detect(), r);
            let r = r as isize;
            for y in 0..h as isize {
                for x in 0..w as isize {
                    let mut want = 0.0;
                    for dy in -r..=r {
                        for dx in -r..=r {
                            let yy = (y + dy).clamp(0, h as isize - 1) as usize;
                            let xx = (x + dx).clamp(0, w as isize - 1) as usize;
                            want += p.data[yy * w + xx];
                        }
                    }
                    assert_eq!(sums.data[y as usize * w + x as usize], want, "at {x},{y}");
                }
            }
        }
    }

    /// The weights are Keys's kernel at each tap's distance, sum to 1, and pass a sample
    /// on a pixel through.
    #[test]
    fn cubic_weights_follow_the_kernel() {
        let a = KEYS_A;
        let kernel = |x: f32| {
            let x = x.abs();
            if x <= 1.0 {
                (a + 2.0) * x.powi(3) - (a + 3.0) * x * x + 1.0
            } else if x < 2.0 {
                a * x.powi(3) - 5.0 * a * x * x + 8.0 * a * x - 4.0 * a
            } else {
                0.0
            }
        };
        for t in [0.0, 0.125, 0.3, 0.5, 0.77, 0.999] {
            let weights = cubic_weights(t);
            for (k, w) in weights.iter().enumerate() {
                let want = kernel(t + 1.0 - k as f32);
                assert!((w - want).abs() < 1e-6, "t {t} tap {k}: {w} vs {want}");
            }
            assert!((weights.iter().sum::<f32>() - 1.0).abs() < 1e-6, "t {t}");
        }
        assert_eq!(cubic_weights(0.0), [0.0, 1.0, 0.0, 0.0]);
    }

    /// The cubic sample agrees with the textbook sum of 16 clamped taps, inside, at the edges
    /// and far outside.
    #[test]
    fn cubic_samples_match_the_clamped_sum() {
        let (w, h) = (7, 5);
        let p = Plane::new(w, h, (0..w * h).map(|v| (v * 5 % 13) as f32).collect());
        for (x, y) in [
            (2.3, 1.7),
            (0.0, 0.0),
            (-0.6, 4.4),
            (6.9, -1.2),
            (-9.0, 30.0),
        ] {
            let (fx, fy) = (f32::floor(x), f32::floor(y));
            let (wx, wy) = (cubic_weights(x - fx), cubic_weights(y - fy));
            let mut want = 0.0;
            for (j, wj) in wy.iter().enumerate() {
                for (i, wi) in wx.iter().enumerate() {
                    let yy = (fy as isize - 1 + j as isize).clamp(0, h as isize - 1) as usize;
                    let xx = (fx as isize - 1 + i as isize).clamp(0, w as isize - 1) as usize;
                    want += wj * wi * p.data[yy * w + xx];
                }
            }
            let got = p.cubic(x, y);
            assert!((got - want).abs() < 1e-4, "at {x},{y}: {got} vs {want}");
        }
    }
}
