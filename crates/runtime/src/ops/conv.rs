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

#[derive(Debug)]
pub struct Im2colConv {
    in_c: usize,
    out_c: usize,
    kh: usize,
    kw: usize,
    stride: (usize, usize),
    dil: (usize, usize),
    pad: Padding,
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
            in_c,
            out_c: spec.out_c,
            kh,
            kw,
            stride: (spec.stride_h, spec.stride_w),
            dil: (spec.dil_h, spec.dil_w),
            pad: spec.pad,
            b,
            bias: spec.bias.clone(),
            act: spec.act.clone(),
            isa,
        }
    }

    pub fn in_channels(&self) -> usize {
        self.in_c
    }

    pub fn out_channels(&self) -> usize {
        self.out_c
    }

    pub fn out_shape(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let ext_h = self.dil.0 * (self.kh - 1) + 1;
        let ext_w = self.dil.1 * (self.kw - 1) + 1;
        let oh = (h + self.pad.top + self.pad.bottom).checked_sub(ext_h)? / self.stride.0 + 1;
        let ow = (w + self.pad.left + self.pad.right).checked_sub(ext_w)? / self.stride.1 + 1;
        Some((oh, ow))
    }

    fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.stride == (1, 1)
            && self.pad
                == Padding {
                    left: 0,
                    right: 0,
                    top: 0,
                    bottom: 0,
                }
    }

    pub fn run(&self, input: &Tensor, output: &mut Tensor, threads: usize) {
        let (ow, out_c, isa) = (output.w, self.out_c, self.isa);
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
        let c = self.in_c;
        for ky in 0..self.kh {
            let y = (oy * self.stride.0 + ky * self.dil.0) as isize - self.pad.top as isize;
            for kx in 0..self.kw {
                let x = (ox * self.stride.1 + kx * self.dil.1) as isize - self.pad.left as isize;
                let dst = &mut row[(ky * self.kw + kx) * c..][..c];
                if y < 0 || x < 0 || y >= input.h as isize || x >= input.w as isize {
                    dst.fill(0.0);
                } else {
                    let at = (y as usize * input.w + x as usize) * c;
                    dst.copy_from_slice(&input.data[at..at + c]);
                }
            }
        }
    }
}
