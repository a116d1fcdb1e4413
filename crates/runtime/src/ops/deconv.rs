//! Transposed convolution: one GEMM gives every input pixel's contribution to each kernel tap,
//! then each output pixel gathers the taps that land on it (no write conflicts, so it
//! parallelises over output rows).
//!
//! When the kernel is as large as the stride (no dilation, padding or overlap: the 2x2, stride 2
//! upsamplings of Real-CUGAN's U-Net), every output pixel takes exactly one tap, and the taps of
//! one kernel row for a row of input pixels are one output row, already in order. Then the GEMM
//! writes the output rows directly, one kernel row's weights at a time: no taps buffer
//! (tens of MB streamed out and back) and no gather. There a U-Net's skip connection (a crop
//! of an earlier activation added to the upsampled one) is added to each row while it is in
//! cache, instead of being copied out by a Crop and streamed through again by an Add.

use crate::graph::{Activation, ConvSpec, Padding};
use crate::kernels::gemm::{gemm, PackedB};
use crate::kernels::{math, Isa};
use crate::ops::layout::CropRegion;
use crate::ops::par_chunks;
use crate::tensor::Tensor;

const BLOCK_PIXELS: usize = 96;

/// The weights, packed for the way a deconvolution runs.
#[derive(Debug)]
enum Packed {
    /// `[c][(ky, kx, o)]`: every tap of a pixel in one GEMM row, gathered afterwards.
    Gathered(PackedB),
    /// `[ky][c][(kx, o)]`, one matrix per kernel row, for [`Deconv::is_direct`] ones.
    Direct(Vec<PackedB>),
}

#[derive(Debug)]
pub struct Deconv {
    in_c: usize,
    out_c: usize,
    kh: usize,
    kw: usize,
    stride: (usize, usize),
    dil: (usize, usize),
    pad: Padding,
    out_pad: (usize, usize),
    packed: Packed,
    bias: Vec<f32>,
    act: Activation,
    isa: Isa,
}

impl Deconv {
    pub fn new(spec: &ConvSpec, isa: Isa) -> Self {
        let (kh, kw, in_c, out_c) = (spec.kh, spec.kw, spec.in_c, spec.out_c);
        let (stride, dil) = ((spec.stride_h, spec.stride_w), (spec.dil_h, spec.dil_w));
        let out_pad = (spec.out_pad_bottom, spec.out_pad_right);
        // Each output pixel takes exactly one tap, in the order the GEMM writes them: kernel
        // as large as the stride, no dilation, padding or output padding.
        let direct = stride == (kh, kw)
            && dil == (1, 1)
            && spec.pad == Padding::default()
            && out_pad == (0, 0);
        let weight = |c: usize, ky: usize, kx: usize, o: usize| {
            spec.weights[((o * in_c + c) * kh + ky) * kw + kx]
        };
        let packed = if direct {
            Packed::Direct(
                (0..kh)
                    .map(|ky| {
                        PackedB::new(isa, in_c, kw * out_c, |c, col| {
                            weight(c, ky, col / out_c, col % out_c)
                        })
                    })
                    .collect(),
            )
        } else {
            Packed::Gathered(PackedB::new(isa, in_c, kh * kw * out_c, |c, col| {
                let (tap, o) = (col / out_c, col % out_c);
                weight(c, tap / kw, tap % kw, o)
            }))
        };
        Deconv {
            in_c,
            out_c,
            kh,
            kw,
            stride,
            dil,
            pad: spec.pad,
            out_pad,
            packed,
            bias: spec.bias.clone(),
            act: spec.act.clone(),
            isa,
        }
    }

    /// Whether each output pixel takes exactly one tap, so that the GEMM writes the output
    /// rows directly (and can add a skip connection as it goes).
    pub(crate) fn is_direct(&self) -> bool {
        matches!(self.packed, Packed::Direct(_))
    }

    pub fn in_channels(&self) -> usize {
        self.in_c
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
        match &self.packed {
            Packed::Gathered(b) => h * w * b.n * 4,
            Packed::Direct(_) => 0,
        }
    }

    pub fn run(&self, input: &Tensor, output: &mut Tensor, threads: usize) {
        let mut taps = vec![0.0f32; self.scratch_bytes(input.h, input.w) / 4];
        self.run_with(input, output, &mut taps, threads);
    }

    /// [`Deconv::run`] with the taps in `taps` (any contents, [`Deconv::scratch_bytes`] long:
    /// the GEMM writes all of it), so that a plan can hand the same buffer to every run
    /// instead of a fresh, page-faulting one of tens of megabytes each time.
    pub fn run_with(&self, input: &Tensor, output: &mut Tensor, taps: &mut [f32], threads: usize) {
        let b = match &self.packed {
            Packed::Gathered(b) => b,
            Packed::Direct(rows) => return self.run_direct(rows, input, output, None, threads),
        };
        let (h, w, isa) = (input.h, input.w, self.isa);
        let (n, in_c) = (b.n, self.in_c);
        assert_eq!(taps.len(), h * w * n, "deconvolution scratch does not fit");
        par_chunks(taps, BLOCK_PIXELS * n, threads, |block, out| {
            let p0 = block * BLOCK_PIXELS;
            gemm(
                isa,
                out.len() / n,
                &input.data[p0 * in_c..],
                in_c,
                b,
                out,
                n,
            );
        });
        let (ow, out_c) = (output.w, self.out_c);
        // Where each output row's and column's taps start in `taps`: a tap is one row offset
        // plus one column offset, found once per run instead of per pixel (the searches
        // divide by the stride, which cost more than the additions of a 3-channel output).
        let rows = TapOffsets::new(
            output.h,
            self.pad.top,
            self.kh,
            self.stride.0,
            self.dil.0,
            h,
            |i, k| i * w * n + k * self.kw * out_c,
        );
        let cols = TapOffsets::new(
            ow,
            self.pad.left,
            self.kw,
            self.stride.1,
            self.dil.1,
            w,
            |i, k| i * n + k * out_c,
        );
        par_chunks(&mut output.data, ow * out_c, threads, |oy, row| {
            crate::dispatch!(isa, {
                row.fill(0.0);
                for (ox, dst) in row.chunks_exact_mut(out_c).enumerate() {
                    for &r in rows.of(oy) {
                        for &c in cols.of(ox) {
                            for (d, s) in dst.iter_mut().zip(&taps[r + c..][..out_c]) {
                                *d += s;
                            }
                        }
                    }
                }
                math::bias_activation(row, out_c, Some(&self.bias), &self.act);
            });
        });
    }

    /// Output row `oy` is kernel row `oy % kh` of input row `oy / kh`: one GEMM of the input
    /// row's pixels by that kernel row's weights, whose `kw * out_c` columns a pixel are its
    /// `kw` output pixels side by side (`rows`, one matrix per kernel row). With `skip`, the
    /// region of that tensor is added to the output after the activation.
    fn run_direct(
        &self,
        rows: &[PackedB],
        input: &Tensor,
        output: &mut Tensor,
        skip: Option<(&Tensor, CropRegion)>,
        threads: usize,
    ) {
        let (w, in_c, out_c, isa) = (input.w, self.in_c, self.out_c, self.isa);
        assert_eq!(
            (output.h, output.w, output.c),
            (input.h * self.kh, w * self.kw, out_c),
            "deconvolution output shape"
        );
        if let Some((_, r)) = skip {
            assert_eq!((r.h, r.w, r.ch), (output.h, output.w, out_c), "skip region");
        }
        let n = self.kw * out_c;
        par_chunks(&mut output.data, w * n, threads, |oy, row| {
            let (iy, ky) = (oy / self.kh, oy % self.kh);
            gemm(
                isa,
                w,
                &input.data[iy * w * in_c..],
                in_c,
                &rows[ky],
                row,
                n,
            );
            crate::dispatch!(isa, {
                math::bias_activation(row, out_c, Some(&self.bias), &self.act);
                if let Some((t, r)) = skip {
                    let first = ((r.y + oy) * t.w + r.x) * t.c + r.c;
                    for (x, dst) in row.chunks_exact_mut(out_c).enumerate() {
                        let src = &t.data[first + x * t.c..][..out_c];
                        for (d, s) in dst.iter_mut().zip(src) {
                            *d += s;
                        }
                    }
                }
            });
        });
    }

    /// The output plus `region` of `skip` (the same shape): the deconvolution, a Crop and an
    /// Add in one pass. Only for [`Deconv::is_direct`] ones.
    pub(crate) fn run_adding(
        &self,
        input: &Tensor,
        output: &mut Tensor,
        skip: &Tensor,
        region: CropRegion,
        threads: usize,
    ) {
        let Packed::Direct(rows) = &self.packed else {
            panic!("only direct deconvolutions add a skip");
        };
        self.run_direct(rows, input, output, Some((skip, region)), threads);
    }
}

/// For each index along one output axis, the offsets (in the taps buffer) of the taps that
/// land on it.
struct TapOffsets {
    offsets: Vec<usize>,
    /// `offsets[starts[o]..starts[o + 1]]` are output index `o`'s.
    starts: Vec<usize>,
}

impl TapOffsets {
    /// `out_len` output indices, cropped by `pad` at the start; taps `0..k` of each of `len`
    /// input indices land at `input * stride + tap * dil`; `offset(input, tap)` places them.
    fn new(
        out_len: usize,
        pad: usize,
        k: usize,
        stride: usize,
        dil: usize,
        len: usize,
        offset: impl Fn(usize, usize) -> usize,
    ) -> Self {
        let mut offsets = Vec::with_capacity(out_len * k.div_ceil(stride));
        let mut starts = Vec::with_capacity(out_len + 1);
        for o in 0..out_len {
            starts.push(offsets.len());
            for tap in 0..k {
                let Some(t) = (o + pad).checked_sub(tap * dil) else {
                    continue;
                };
                if t % stride == 0 && t / stride < len {
                    offsets.push(offset(t / stride, tap));
                }
            }
        }
        starts.push(offsets.len());
        TapOffsets { offsets, starts }
    }

    fn of(&self, o: usize) -> &[usize] {
        &self.offsets[self.starts[o]..self.starts[o + 1]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{assert_close, cases};

    /// The definition: every input pixel scatters its kernel onto the output.
    fn scattered(s: &ConvSpec, input: &Tensor, oh: usize, ow: usize) -> Vec<f32> {
        let (ih, iw, oc) = (input.h, input.w, s.out_c);
        let mut out = vec![0.0f32; oh * ow * oc];
        for iy in 0..ih {
            for ix in 0..iw {
                for ky in 0..s.kh {
                    for kx in 0..s.kw {
                        let y = (iy * s.stride_h + ky).checked_sub(s.pad.top);
                        let x = (ix * s.stride_w + kx).checked_sub(s.pad.left);
                        let (Some(y), Some(x)) = (y, x) else { continue };
                        if y >= oh || x >= ow {
                            continue;
                        }
                        for o in 0..oc {
                            for c in 0..s.in_c {
                                let wt = s.weights[((o * s.in_c + c) * s.kh + ky) * s.kw + kx];
                                out[(y * ow + x) * oc + o] +=
                                    wt * input.data[(iy * iw + ix) * s.in_c + c];
                            }
                        }
                    }
                }
            }
        }
        for (i, v) in out.iter_mut().enumerate() {
            let b = *v + s.bias[i % oc];
            *v = if b < 0.0 { b * 0.1 } else { b };
        }
        out
    }

    /// Both paths, the direct one (kernel = stride) and the gathering one (overlapping taps,
    /// cropped borders), against the definition, across panel tails, ISAs and threads.
    #[test]
    fn matches_the_definition() {
        let cases = cases(&[
            // Direct: whole panels, a panel tail, a 3x3 kernel at stride 3.
            [64, 64, 2, 2, 0, 5, 7],
            [16, 20, 2, 2, 0, 3, 13],
            [8, 3, 3, 3, 0, 4, 4],
            // Gathering: Real-CUGAN's last layer (4x4, stride 2, cropped by 3), a 3x3.
            [64, 3, 4, 2, 3, 6, 5],
            [12, 7, 3, 2, 1, 4, 3],
        ]);
        for isa in Isa::all_supported() {
            for case in &cases {
                let (s, input) = (case.spec(), case.input());
                let deconv = Deconv::new(&s, isa);
                assert_eq!(deconv.is_direct(), case.k == case.stride && case.pad == 0);
                let (oh, ow) = deconv.out_shape(case.h, case.w).expect("an output");
                let want = scattered(&s, &input, oh, ow);
                for threads in [1, 2] {
                    let mut out = Tensor::zeros(oh, ow, case.out_c);
                    deconv.run(&input, &mut out, threads);
                    assert_close(&out.data, &want, 1e-4, &format!("{} {case:?}", isa.name()));
                }
            }
        }
    }
}
