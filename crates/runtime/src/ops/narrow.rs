//! Convolutions to a few output channels (a network's last layer, 64 channels to RGB): direct,
//! vectorised over the input channels.
//!
//! Winograd and im2col both run their GEMM on panels 32 output channels wide, so for 3 output
//! channels more than 90% of their multiply-adds are padding, and Winograd also transforms
//! every input channel of a full-resolution activation. Here each output pixel's channels are
//! sums over its receptive field read in place, every multiply-add one that counts: each tap's
//! weights are held in registers while a few neighbouring pixels are accumulated.

use crate::graph::{Activation, ConvSpec};
use crate::kernels::{math, Isa, IsaLevel, LANES};
use crate::ops::conv::Geometry;
use crate::ops::par_chunks;
use crate::tensor::Tensor;

/// The most output channels taken: each is `PIXELS` vector accumulators.
pub const MAX_OUT_CHANNELS: usize = 4;

/// Neighbouring output pixels accumulated together, sharing each weight load.
const PIXELS: usize = 4;

#[derive(Debug)]
pub struct NarrowConv {
    geometry: Geometry,
    /// `[ky][kx][o][c]`: one tap's weights for all output channels together.
    weights: Vec<f32>,
    /// `in_c` zeros, read for taps outside the input.
    zeros: Vec<f32>,
    bias: Vec<f32>,
    act: Activation,
    isa: Isa,
}

impl NarrowConv {
    /// A few output channels, input channels in whole vectors, and AVX-512 (elsewhere the
    /// GEMM paths, padding and all, are faster than this without its vector registers).
    pub fn supports(spec: &ConvSpec, isa: Isa) -> bool {
        (1..=MAX_OUT_CHANNELS).contains(&spec.out_c)
            && spec.in_c > 0
            && spec.in_c.is_multiple_of(LANES)
            && isa.level() == IsaLevel::Avx512
            && cfg!(target_arch = "x86_64")
    }

    /// For a `spec` and `isa` [`NarrowConv::supports`].
    pub fn new(spec: &ConvSpec, isa: Isa) -> Self {
        assert!(
            Self::supports(spec, isa),
            "not a narrow convolution for {}",
            isa.name()
        );
        let (kh, kw, in_c, out_c) = (spec.kh, spec.kw, spec.in_c, spec.out_c);
        let mut weights = Vec::with_capacity(kh * kw * out_c * in_c);
        for tap in 0..kh * kw {
            for o in 0..out_c {
                for c in 0..in_c {
                    weights.push(spec.weights[(o * in_c + c) * kh * kw + tap]);
                }
            }
        }
        NarrowConv {
            geometry: Geometry::of(spec),
            weights,
            zeros: vec![0.0; in_c],
            bias: spec.bias.clone(),
            act: spec.act.clone(),
            isa,
        }
    }

    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    pub fn run(&self, input: &Tensor, output: &mut Tensor, threads: usize) {
        assert_eq!(
            input.c, self.geometry.in_c,
            "narrow convolution input channels"
        );
        let (ow, out_c, isa) = (output.w, self.geometry.out_c, self.isa);
        par_chunks(&mut output.data, ow * out_c, threads, |oy, row| {
            // SAFETY: `new` took an AVX-512 `Isa`, which exists only where the CPU has it.
            // Every vector load reads inside a bounds-checked slice (`in_c` input floats, a
            // multiple of the vector width, or a tap's `O * in_c` weights).
            #[cfg(target_arch = "x86_64")]
            unsafe {
                match out_c {
                    1 => self.row_avx512::<1>(input, oy, row),
                    2 => self.row_avx512::<2>(input, oy, row),
                    3 => self.row_avx512::<3>(input, oy, row),
                    _ => self.row_avx512::<4>(input, oy, row),
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!("narrow convolutions are planned only with AVX-512");
            crate::dispatch!(isa, {
                math::bias_activation(row, out_c, Some(&self.bias), &self.act);
            });
        });
    }

    /// Output row `oy` before bias and activation, `O` channels a pixel.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn row_avx512<const O: usize>(&self, input: &Tensor, oy: usize, row: &mut [f32]) {
        use std::arch::x86_64::*;
        let (win, in_c) = (&self.geometry, self.geometry.in_c);
        // Taps outside the input (zero padding) and pixels past the row's end read zeros, so
        // the accumulation has no branches.
        let zeros = self.zeros.as_ptr();
        for (block, out) in row.chunks_mut(PIXELS * O).enumerate() {
            let ox0 = block * PIXELS;
            let pixels = out.len() / O;
            let mut acc = [[_mm512_setzero_ps(); O]; PIXELS];
            for ky in 0..win.kh {
                let Some(iy) = win.row(oy, ky, input.h) else {
                    continue;
                };
                let line = &input.data[iy * input.w * in_c..][..input.w * in_c];
                for kx in 0..win.kw {
                    let tap = self.weights[(ky * win.kw + kx) * O * in_c..][..O * in_c].as_ptr();
                    let sources: [*const f32; PIXELS] = std::array::from_fn(|p| {
                        match win.col(ox0 + p, kx, input.w).filter(|_| p < pixels) {
                            Some(ix) => line[ix * in_c..][..in_c].as_ptr(),
                            None => zeros,
                        }
                    });
                    let mut cb = 0;
                    while cb < in_c {
                        let w: [__m512; O] =
                            std::array::from_fn(|o| _mm512_loadu_ps(tap.add(o * in_c + cb)));
                        for p in 0..PIXELS {
                            let x = _mm512_loadu_ps(sources[p].add(cb));
                            for o in 0..O {
                                acc[p][o] = _mm512_fmadd_ps(x, w[o], acc[p][o]);
                            }
                        }
                        cb += LANES;
                    }
                }
            }
            for (px, acc) in out.chunks_exact_mut(O).zip(&acc) {
                for (v, a) in px.iter_mut().zip(acc) {
                    *v = _mm512_reduce_add_ps(*a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv::Im2colConv;
    use crate::ops::testing::{assert_close, cases};

    /// Against im2col, across output channel counts, strides, borders, pixel-block tails and
    /// threads (where the CPU has AVX-512).
    #[test]
    fn matches_im2col() {
        let cases = cases(&[
            [64, 3, 3, 1, 1, 9, 11], // a network's last layer, a pixel block's tail
            [16, 1, 3, 1, 0, 6, 5],  // one channel, no padding
            [32, 2, 1, 1, 0, 4, 7],  // pointwise
            [48, 4, 3, 2, 1, 8, 9],  // stride 2
            [16, 3, 5, 1, 2, 3, 2],  // a kernel wider than the input
        ]);
        let avx512 = Isa::all_supported()
            .into_iter()
            .filter(|&isa| isa.level() == IsaLevel::Avx512);
        for isa in avx512 {
            for case in &cases {
                let (s, input) = (case.spec(), case.input());
                assert!(NarrowConv::supports(&s, isa));
                let (narrow, reference) = (NarrowConv::new(&s, isa), Im2colConv::new(&s, isa));
                let (oh, ow) = narrow
                    .geometry()
                    .out_shape(case.h, case.w)
                    .expect("an output");
                let mut want = Tensor::zeros(oh, ow, case.out_c);
                reference.run(&input, &mut want, 1);
                for threads in [1, 2] {
                    let mut got = Tensor::zeros(oh, ow, case.out_c);
                    narrow.run(&input, &mut got, threads);
                    assert_close(
                        &got.data,
                        &want.data,
                        1e-4,
                        &format!("{} {case:?}", isa.name()),
                    );
                }
            }
        }
    }
}
