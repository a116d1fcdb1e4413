//! One-channel float images and the few filters the stabiliser needs on them: bilinear
//! sampling, halving for a pyramid, and box sums over a square window.

use rayon::prelude::*;
use vsr_runtime::Tensor;

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
            .for_each(|(y, p)| *y = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]);
        Plane::new(t.w, t.h, data)
    }

    /// The value at a fractional position, the edges repeated outwards.
    pub fn bilinear(&self, x: f32, y: f32) -> f32 {
        let x = x.clamp(0.0, (self.w - 1) as f32);
        let y = y.clamp(0.0, (self.h - 1) as f32);
        let (x0, y0) = (x as usize, y as usize);
        let (x1, y1) = ((x0 + 1).min(self.w - 1), (y0 + 1).min(self.h - 1));
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let row0 = &self.data[y0 * self.w..];
        let row1 = &self.data[y1 * self.w..];
        let top = row0[x0] + fx * (row0[x1] - row0[x0]);
        let bottom = row1[x0] + fx * (row1[x1] - row1[x0]);
        top + fy * (bottom - top)
    }

    /// The value at a fractional position by Catmull-Rom interpolation (sharper than
    /// bilinear, whose blur at half-pixel phases would bias a motion search), the edges
    /// repeated outwards.
    pub fn cubic(&self, x: f32, y: f32) -> f32 {
        let (fx, fy) = (x.floor(), y.floor());
        let (wx, wy) = (cubic_weights(x - fx), cubic_weights(y - fy));
        let clamp = |i: isize, n: usize| i.clamp(0, n as isize - 1) as usize;
        let (x0, y0) = (fx as isize - 1, fy as isize - 1);
        let mut value = 0.0;
        for (j, wj) in wy.iter().enumerate() {
            let row = &self.data[clamp(y0 + j as isize, self.h) * self.w..];
            let line: f32 = wx
                .iter()
                .enumerate()
                .map(|(i, wi)| wi * row[clamp(x0 + i as isize, self.w)])
                .sum();
            value += wj * line;
        }
        value
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

    /// The sum over the `(2r+1)^2` window around each pixel, the edges repeated outwards:
    /// running sums along the rows, then a running row of sums moved down the image, so the
    /// cost does not grow with `r` and every pass reads memory in order.
    pub fn box_sum(&self, r: usize) -> Plane {
        let (w, h) = (self.w, self.h);
        let mut rows = vec![0.0; w * h];
        for (src, dst) in self.data.chunks_exact(w).zip(rows.chunks_exact_mut(w)) {
            let at = |i: isize| src[i.clamp(0, w as isize - 1) as usize];
            let mut sum: f32 = (-(r as isize)..=r as isize).map(at).sum();
            for (x, d) in dst.iter_mut().enumerate() {
                *d = sum;
                sum += at((x + r + 1) as isize) - at(x as isize - r as isize);
            }
        }
        let row = |i: isize| &rows[i.clamp(0, h as isize - 1) as usize * w..][..w];
        let mut sums = vec![0.0f32; w];
        for i in -(r as isize)..=r as isize {
            for (s, v) in sums.iter_mut().zip(row(i)) {
                *s += v;
            }
        }
        let mut out = vec![0.0; w * h];
        for (y, dst) in out.chunks_exact_mut(w).enumerate() {
            dst.copy_from_slice(&sums);
            let (entering, leaving) = (row((y + r + 1) as isize), row(y as isize - r as isize));
            for ((s, e), l) in sums.iter_mut().zip(entering).zip(leaving) {
                *s += e - l;
            }
        }
        Plane::new(w, h, out)
    }
}

/// Catmull-Rom weights for the four taps around a sample at fraction `t` past the second.
pub fn cubic_weights(t: f32) -> [f32; 4] {
    let (t2, t3) = (t * t, t * t * t);
    [
        0.5 * (-t3 + 2.0 * t2 - t),
        0.5 * (3.0 * t3 - 5.0 * t2 + 2.0),
        0.5 * (-3.0 * t3 + 4.0 * t2 + t),
        0.5 * (t3 - t2),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_sums_match_a_direct_sum() {
        let p = Plane::new(5, 4, (0..20).map(|v| (v * 7 % 11) as f32).collect());
        let sums = p.box_sum(1);
        for y in 0..4isize {
            for x in 0..5isize {
                let mut want = 0.0;
                for dy in -1..=1 {
                    for dx in -1..=1 {
                        let (yy, xx) = ((y + dy).clamp(0, 3), (x + dx).clamp(0, 4));
                        want += p.data[(yy * 5 + xx) as usize];
                    }
                }
                assert_eq!(sums.data[(y * 5 + x) as usize], want, "at {x},{y}");
            }
        }
    }

    #[test]
    fn bilinear_interpolates_and_clamps() {
        let p = Plane::new(2, 2, vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(p.bilinear(0.5, 0.5), 1.5);
        assert_eq!(p.bilinear(-3.0, 9.0), 2.0);
    }
}
