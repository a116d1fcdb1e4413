//! Convolutions other than 3x3 stride 1 (and those with few input channels): gather each output
//! pixel's receptive field into a row (im2col), then one packed GEMM per block of pixels.
//! 1x1 stride-1 convolutions skip the gather: channels-last input already is the matrix.

use super::scratch::with_scratch;
use crate::graph::{Activation, ConvSpec, Padding};
use crate::kernels::gemm::{gemm, PackedB};
use crate::kernels::{math, Isa};
use crate::ops::par_chunks;
use crate::tensor::Tensor;

/// Output pixels per GEMM block.
const BLOCK_PIXELS: usize = 96;

/// A convolution's shape apart from its weights: channels, and where its kernel reads (size,
/// stride, dilation, zero padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub in_c: usize,
    pub out_c: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: (usize, usize),
    pub dil: (usize, usize),
    pub pad: Padding,
}

impl Geometry {
    pub fn of(spec: &ConvSpec) -> Self {
        Geometry {
            in_c: spec.in_c,
            out_c: spec.out_c,
            kh: spec.kh,
            kw: spec.kw,
            stride: (spec.stride_h, spec.stride_w),
            dil: (spec.dil_h, spec.dil_w),
            pad: spec.pad,
        }
    }

    /// Output (rows, columns) for an `h x w` input; `None` if the kernel does not fit.
    pub fn out_shape(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let ext_h = self.dil.0 * (self.kh - 1) + 1;
        let ext_w = self.dil.1 * (self.kw - 1) + 1;
        let oh = (h + self.pad.top + self.pad.bottom).checked_sub(ext_h)? / self.stride.0 + 1;
        let ow = (w + self.pad.left + self.pad.right).checked_sub(ext_w)? / self.stride.1 + 1;
        Some((oh, ow))
    }

    /// The input row tap `ky` of output row `oy` reads, if inside an input `h` rows high.
    #[inline(always)]
    pub fn row(&self, oy: usize, ky: usize, h: usize) -> Option<usize> {
        (oy * self.stride.0 + ky * self.dil.0)
            .checked_sub(self.pad.top)
            .filter(|&y| y < h)
    }

    /// The input column tap `kx` of output column `ox` reads, if inside an input `w` wide.
    #[inline(always)]
    pub fn col(&self, ox: usize, kx: usize, w: usize) -> Option<usize> {
        (ox * self.stride.1 + kx * self.dil.1)
            .checked_sub(self.pad.left)
            .filter(|&x| x < w)
    }
}

#[derive(Debug)]
pub struct Im2colConv {
    geometry: Geometry,
    /// `[(ky, kx, c)][o]`, matching the gathered row order.
    b: PackedB,
    bias: Vec<f32>,
    act: Activation,
    isa: Isa,
}

impl Im2colConv {
    pub fn new(spec: &ConvSpec, isa: Isa) -> Self {
        let (kh, kw, in_c) = (spec.kh, spec.kw, spec.in_c);
        let k = kh * kw * in_c;
        let b = PackedB::new(isa, k, spec.out_c, |row, o| {
            let (tap, c) = (row / in_c, row % in_c);
            spec.weights[((o * in_c + c) * kh + tap / kw) * kw + tap % kw]
        });
        Im2colConv {
            geometry: Geometry::of(spec),
            b,
            bias: spec.bias.clone(),
            act: spec.act.clone(),
            isa,
        }
    }

    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    fn is_pointwise(&self) -> bool {
        let w = &self.geometry;
        (w.kh, w.kw, w.stride, w.pad) == (1, 1, (1, 1), Padding::default())
    }

    pub fn run(&self, input: &Tensor, output: &mut Tensor, threads: usize) {
        let (ow, out_c, isa) = (output.w, self.geometry.out_c, self.isa);
        let k = self.b.k;
        let pointwise = self.is_pointwise();
        par_chunks(
            &mut output.data,
            BLOCK_PIXELS * out_c,
            threads,
            |block, out| {
                let p0 = block * BLOCK_PIXELS;
                let pixels = out.len() / out_c;
                crate::dispatch!(isa, {
                    if pointwise {
                        gemm(isa, pixels, &input.data[p0 * k..], k, &self.b, out, out_c);
                    } else {
                        with_scratch(pixels * k, |rows| {
                            for (i, row) in rows.chunks_exact_mut(k).enumerate() {
                                self.gather((p0 + i) / ow, (p0 + i) % ow, input, row);
                            }
                            gemm(isa, pixels, rows, k, &self.b, out, out_c);
                        });
                    }
                    math::bias_activation(out, out_c, Some(&self.bias), &self.act);
                });
            },
        );
    }

    /// Copies the receptive field of output pixel (`oy`, `ox`) into `row`, zeros outside.
    #[inline(always)]
    fn gather(&self, oy: usize, ox: usize, input: &Tensor, row: &mut [f32]) {
        let (c, win) = (self.geometry.in_c, &self.geometry);
        for ky in 0..win.kh {
            let y = win.row(oy, ky, input.h);
            for kx in 0..win.kw {
                let dst = &mut row[(ky * win.kw + kx) * c..][..c];
                match (y, win.col(ox, kx, input.w)) {
                    (Some(y), Some(x)) => {
                        let at = (y * input.w + x) * c;
                        dst.copy_from_slice(&input.data[at..at + c]);
                    }
                    _ => dst.fill(0.0),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Activation;
    use crate::ops::testing::{assert_close, input, spec};

    /// Every output value is the convolution's definition (the taps inside the input summed,
    /// zero padding outside, positions computed here in signed arithmetic, not by
    /// [`Geometry`]), with kernels, strides, dilations and uneven paddings that put taps past
    /// every edge, outputs of several pixel blocks and a partial last one, the pointwise path,
    /// one and two threads, on every ISA the CPU has: the reference the other convolutions'
    /// tests use.
    #[test]
    fn im2col_matches_the_definition() {
        // in_c, out_c, k, stride, dilation (rows, columns), padding (top, bottom, left,
        // right), h, w
        let shapes = [
            (5, 7, 2, 2, (1, 1), (0, 0, 0, 0), 8, 10), // realcugan's downsampling
            (3, 4, 3, 1, (1, 1), (1, 1, 1, 1), 17, 13), // three pixel blocks, the last partial
            (4, 3, 3, 2, (1, 1), (2, 0, 1, 3), 9, 7),
            (2, 5, 3, 1, (2, 3), (0, 2, 3, 1), 7, 8),
            (6, 2, 4, 2, (1, 1), (1, 2, 2, 1), 10, 6),
            (8, 6, 1, 1, (1, 1), (0, 0, 0, 0), 11, 12), // pointwise: no gather
        ];
        for (in_c, out_c, k, stride, (dil_h, dil_w), (top, bottom, left, right), h, w) in shapes {
            let mut s = spec(in_c, out_c, k, stride, 0, Activation::Identity);
            (s.dil_h, s.dil_w) = (dil_h, dil_w);
            s.pad = Padding {
                top,
                bottom,
                left,
                right,
            };
            let x = input(h, w, in_c);
            let (sk, ss) = (k as isize, stride as isize);
            let reach = |n: usize, before: usize, after: usize, dil: usize| {
                (n + before + after - dil * (k - 1) - 1) / stride + 1
            };
            let (oh, ow) = (reach(h, top, bottom, dil_h), reach(w, left, right, dil_w));
            let mut want = vec![0.0; oh * ow * out_c];
            for (n, v) in want.iter_mut().enumerate() {
                let (o, ox, oy) = (n % out_c, n / out_c % ow, n / out_c / ow);
                *v = s.bias[o];
                for ky in 0..sk {
                    for kx in 0..sk {
                        let y = oy as isize * ss + ky * dil_h as isize - top as isize;
                        let xx = ox as isize * ss + kx * dil_w as isize - left as isize;
                        if y < 0 || xx < 0 || y >= h as isize || xx >= w as isize {
                            continue;
                        }
                        let at = (y as usize * w + xx as usize) * in_c;
                        let tap = (ky * sk + kx) as usize;
                        for i in 0..in_c {
                            *v += s.weights[(o * in_c + i) * k * k + tap] * x.data[at + i];
                        }
                    }
                }
            }
            for isa in Isa::all_supported() {
                for threads in [1, 2] {
                    let mut got = Tensor::zeros(oh, ow, out_c);
                    Im2colConv::new(&s, isa).run(&x, &mut got, threads);
                    assert_close(&got.data, &want, 1e-4, &format!("{} {s:?}", isa.name()));
                }
            }
        }
    }
}
