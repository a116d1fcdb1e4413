//! Convolutions to a few output channels (a network's last layer, 64 channels to RGB): direct,
//! vectorised over the input channels.
//!
//! Winograd and im2col both run their GEMM on panels 32 output channels wide, so for 3 output
//! channels more than 90% of their multiply-adds are padding, and Winograd also transforms
//! every input channel of a full-resolution activation. Here each output pixel's channels are
//! sums over its receptive field read in place, every multiply-add one that counts: each tap's
//! weights are held in registers while a few neighbouring pixels are accumulated (AVX2 and
//! AVX-512; the portable build keeps the GEMM paths).

use crate::graph::{Activation, ConvSpec};
use crate::kernels::{math, Isa, IsaLevel};
use crate::ops::conv::Geometry;
use crate::ops::par_chunks;
use crate::tensor::Tensor;

/// The most output channels taken: each is a vector accumulator per pixel in flight.
pub const MAX_OUT_CHANNELS: usize = 4;

/// Output row `oy` of `$conv` before bias and activation, `$o` channels a pixel, `$pixels`
/// neighbouring pixels at a time with `$lanes`-float vectors: each tap's weights are loaded
/// once per channel group and used for all the pixels. Taps outside the input (zero padding)
/// and pixels past the row's end read zeros, so the accumulation has no branches. One body
/// for every instruction set, whose intrinsics are passed in.
macro_rules! accumulate_row {
    ($conv:ident, $input:ident, $oy:ident, $row:ident, $o:ident, $pixels:literal, $lanes:literal,
     $zero:ident, $load:ident, $fmadd:ident, $sum:ident) => {{
        let (win, in_c) = (&$conv.geometry, $conv.geometry.in_c);
        let zeros = $conv.zeros.as_ptr();
        for (block, out) in $row.chunks_mut($pixels * $o).enumerate() {
            let ox0 = block * $pixels;
            let pixels = out.len() / $o;
            let mut acc = [[$zero(); $o]; $pixels];
            for ky in 0..win.kh {
                let Some(iy) = win.row($oy, ky, $input.h) else {
                    continue;
                };
                let line = &$input.data[iy * $input.w * in_c..][..$input.w * in_c];
                for kx in 0..win.kw {
                    let tap = $conv.weights[(ky * win.kw + kx) * $o * in_c..][..$o * in_c].as_ptr();
                    let sources: [*const f32; $pixels] = std::array::from_fn(|p| {
                        match win.col(ox0 + p, kx, $input.w).filter(|_| p < pixels) {
                            Some(ix) => line[ix * in_c..][..in_c].as_ptr(),
                            None => zeros,
                        }
                    });
                    let mut cb = 0;
                    while cb < in_c {
                        let w: [_; $o] = std::array::from_fn(|o| $load(tap.add(o * in_c + cb)));
                        for p in 0..$pixels {
                            let x = $load(sources[p].add(cb));
                            for o in 0..$o {
                                acc[p][o] = $fmadd(x, w[o], acc[p][o]);
                            }
                        }
                        cb += $lanes;
                    }
                }
            }
            for (px, acc) in out.chunks_exact_mut($o).zip(&acc) {
                for (v, a) in px.iter_mut().zip(acc) {
                    *v = $sum(*a);
                }
            }
        }
    }};
}

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
    /// A few output channels, input channels in whole vectors of the ISA, and AVX2 or
    /// AVX-512 (the portable build has no vector width to count on).
    pub fn supports(spec: &ConvSpec, isa: Isa) -> bool {
        let lanes = match isa.level() {
            IsaLevel::Avx512 => 16,
            IsaLevel::Avx2 => 8,
            IsaLevel::Portable => return false,
        };
        (1..=MAX_OUT_CHANNELS).contains(&spec.out_c)
            && spec.in_c > 0
            && spec.in_c.is_multiple_of(lanes)
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
            // SAFETY: `new` took an AVX2 or AVX-512 `Isa`, which exists only where the CPU has
            // it. Every vector load reads inside a bounds-checked slice (`in_c` input floats,
            // a multiple of the vector width, or a tap's `O * in_c` weights).
            #[cfg(target_arch = "x86_64")]
            unsafe {
                match (isa.level() == IsaLevel::Avx512, out_c) {
                    (true, 1) => self.row_avx512::<1>(input, oy, row),
                    (true, 2) => self.row_avx512::<2>(input, oy, row),
                    (true, 3) => self.row_avx512::<3>(input, oy, row),
                    (true, _) => self.row_avx512::<4>(input, oy, row),
                    (false, 1) => self.row_avx2::<1>(input, oy, row),
                    (false, 2) => self.row_avx2::<2>(input, oy, row),
                    (false, 3) => self.row_avx2::<3>(input, oy, row),
                    (false, _) => self.row_avx2::<4>(input, oy, row),
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!("narrow convolutions are planned only with AVX2 or AVX-512");
            crate::dispatch!(isa, {
                math::bias_activation(row, out_c, Some(&self.bias), &self.act);
            });
        });
    }

    /// AVX-512: 16-float vectors, 32 registers, so four pixels' accumulators fit.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn row_avx512<const O: usize>(&self, input: &Tensor, oy: usize, row: &mut [f32]) {
        use std::arch::x86_64::*;
        accumulate_row!(
            self,
            input,
            oy,
            row,
            O,
            4,
            16,
            _mm512_setzero_ps,
            _mm512_loadu_ps,
            _mm512_fmadd_ps,
            _mm512_reduce_add_ps
        );
    }

    /// AVX2: 8-float vectors, 16 registers, so two pixels at a time.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn row_avx2<const O: usize>(&self, input: &Tensor, oy: usize, row: &mut [f32]) {
        use std::arch::x86_64::*;
        accumulate_row!(
            self,
            input,
            oy,
            row,
            O,
            2,
            8,
            _mm256_setzero_ps,
            _mm256_loadu_ps,
            _mm256_fmadd_ps,
            sum_avx2
        );
    }
}

/// The sum of a vector's eight lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sum_avx2(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
    _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps::<1>(pair, pair)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv::Im2colConv;
    use crate::ops::testing::{assert_close, cases};

    /// Against im2col, across output channel counts, strides, borders, pixel-block tails,
    /// vector ISAs and threads.
    #[test]
    fn matches_im2col() {
        let cases = cases(&[
            [64, 3, 3, 1, 1, 9, 11], // a network's last layer, a pixel block's tail
            [16, 1, 3, 1, 0, 6, 5],  // one channel, no padding
            [32, 2, 1, 1, 0, 4, 7],  // pointwise
            [48, 4, 3, 2, 1, 8, 9],  // stride 2
            [16, 3, 5, 1, 2, 3, 2],  // a kernel wider than the input
            [24, 3, 3, 1, 1, 5, 6],  // whole AVX2 vectors only
        ]);
        let vector = Isa::all_supported()
            .into_iter()
            .filter(|&isa| isa.level() != IsaLevel::Portable);
        for isa in vector {
            for case in &cases {
                let (s, input) = (case.spec(), case.input());
                if !NarrowConv::supports(&s, isa) {
                    assert!(isa.level() == IsaLevel::Avx512 && !case.in_c.is_multiple_of(16));
                    continue;
                }
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
