//! Transposed convolution: one GEMM gives every input pixel's contribution to each kernel tap,
//! then each output pixel gathers the taps that land on it (no write conflicts, so it
//! parallelises over output rows).

use crate::graph::{Activation, ConvSpec, Padding};
use crate::kernels::gemm::{gemm, PackedB};
use crate::kernels::{math, Isa};
use crate::ops::par_chunks;
use crate::tensor::Tensor;

const BLOCK_PIXELS: usize = 96;

#[derive(Debug)]
pub struct Deconv {
    out_c: usize,
    kh: usize,
    kw: usize,
    stride: (usize, usize),
    dil: (usize, usize),
    pad: Padding,
    out_pad: (usize, usize),
    /// `[c][(ky, kx, o)]`.
    b: PackedB,
    bias: Vec<f32>,
    act: Activation,
    isa: Isa,
}

impl Deconv {
    pub fn new(spec: &ConvSpec, isa: Isa) -> Self {
        let (kh, kw, in_c, out_c) = (spec.kh, spec.kw, spec.in_c, spec.out_c);
        let b = PackedB::new(isa, in_c, kh * kw * out_c, |c, col| {
            let (tap, o) = (col / out_c, col % out_c);
            spec.weights[((o * in_c + c) * kh + tap / kw) * kw + tap % kw]
        });
        Deconv {
            out_c,
            kh,
            kw,
            stride: (spec.stride_h, spec.stride_w),
            dil: (spec.dil_h, spec.dil_w),
            pad: spec.pad,
            out_pad: (spec.out_pad_bottom, spec.out_pad_right),
            b,
            bias: spec.bias.clone(),
            act: spec.act.clone(),
            isa,
        }
    }

    pub fn in_channels(&self) -> usize {
        self.b.k
    }

    pub fn out_channels(&self) -> usize {
        self.out_c
    }

    pub fn out_shape(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let full_h =
            h.checked_sub(1)? * self.stride.0 + self.dil.0 * (self.kh - 1) + 1 + self.out_pad.0;
        let full_w =
            w.checked_sub(1)? * self.stride.1 + self.dil.1 * (self.kw - 1) + 1 + self.out_pad.1;
        let oh = full_h.checked_sub(self.pad.top + self.pad.bottom)?;
        let ow = full_w.checked_sub(self.pad.left + self.pad.right)?;
        (oh > 0 && ow > 0).then_some((oh, ow))
    }

    /// Bytes of scratch for an `h x w` input.
    pub fn scratch_bytes(&self, h: usize, w: usize) -> usize {
        h * w * self.b.n * 4
    }

    pub fn run(&self, input: &Tensor, output: &mut Tensor, threads: usize) {
        let mut taps = vec![0.0f32; self.scratch_bytes(input.h, input.w) / 4];
        self.run_with(input, output, &mut taps, threads);
    }

    /// [`Deconv::run`] with the taps in `taps` (any contents, [`Deconv::scratch_bytes`] long:
    /// the GEMM writes all of it), so that a plan can hand the same buffer to every run
    /// instead of a fresh, page-faulting one of tens of megabytes each time.
    pub fn run_with(&self, input: &Tensor, output: &mut Tensor, taps: &mut [f32], threads: usize) {
        let (h, w, isa) = (input.h, input.w, self.isa);
        let n = self.b.n;
        let in_c = self.b.k;
        assert_eq!(taps.len(), h * w * n, "deconvolution scratch does not fit");
        par_chunks(taps, BLOCK_PIXELS * n, threads, |block, out| {
            let p0 = block * BLOCK_PIXELS;
            gemm(
                isa,
                out.len() / n,
                &input.data[p0 * in_c..],
                in_c,
                &self.b,
                out,
                n,
            );
        });
        let (ow, out_c) = (output.w, self.out_c);
        par_chunks(&mut output.data, ow * out_c, threads, |oy, row| {
            crate::dispatch!(isa, {
                row.fill(0.0);
                for ox in 0..ow {
                    let dst = &mut row[ox * out_c..(ox + 1) * out_c];
                    for ky in 0..self.kh {
                        let Some(iy) =
                            self.source(oy + self.pad.top, ky, self.stride.0, self.dil.0, h)
                        else {
                            continue;
                        };
                        for kx in 0..self.kw {
                            let Some(ix) =
                                self.source(ox + self.pad.left, kx, self.stride.1, self.dil.1, w)
                            else {
                                continue;
                            };
                            let src =
                                &taps[(iy * w + ix) * n + (ky * self.kw + kx) * out_c..][..out_c];
                            for (d, s) in dst.iter_mut().zip(src) {
                                *d += s;
                            }
                        }
                    }
                }
                math::bias_activation(row, out_c, Some(&self.bias), &self.act);
            });
        });
    }

    /// The input index whose tap `k` lands on full-output index `o`, if any.
    #[inline(always)]
    fn source(&self, o: usize, k: usize, stride: usize, dil: usize, len: usize) -> Option<usize> {
        let t = o.checked_sub(k * dil)?;
        (t % stride == 0 && t / stride < len).then_some(t / stride)
    }
}
