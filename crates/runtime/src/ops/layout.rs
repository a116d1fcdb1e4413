//! Operators that move data without arithmetic (Crop, Concat, PixelShuffle) and resampling
//! (Interp), all on channels-last tensors.

use crate::graph::{CropSpec, InterpMode};
use crate::kernels::Isa;
use crate::ops::copy_channels;
use crate::tensor::{Shape, Tensor};

/// A crop as ranges on (h, w, c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropRegion {
    pub y: usize,
    pub x: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub ch: usize,
}

/// Resolves a crop against the input (and optional reference) shape; `None` if out of range.
pub fn crop_region(spec: &CropSpec, input: Shape, reference: Option<Shape>) -> Option<CropRegion> {
    let (h, w, c) = (input.h, input.w, input.c);
    let region = match spec {
        CropSpec::Offsets {
            w: wo,
            h: ho,
            c: co,
            out_w,
            out_h,
            out_c,
            w2,
            h2,
            c2,
        } => {
            let (rw, rh, rc) = match reference {
                Some(r) => (r.w, r.h, if r.dims == 3 { r.c } else { c - co }),
                None => (
                    if *out_w == 0 {
                        w.checked_sub(wo + w2)?
                    } else {
                        *out_w
                    },
                    if *out_h == 0 {
                        h.checked_sub(ho + h2)?
                    } else {
                        *out_h
                    },
                    if *out_c == 0 {
                        c.checked_sub(co + c2)?
                    } else {
                        *out_c
                    },
                ),
            };
            let (co, rc) = if input.dims == 3 { (*co, rc) } else { (0, c) };
            CropRegion {
                y: *ho,
                x: *wo,
                c: co,
                h: rh,
                w: rw,
                ch: rc,
            }
        }
        CropSpec::Ranges { starts, ends, axes } => {
            // Axis numbers as in ncnn for a 3-D blob: 0 = channels, 1 = rows, 2 = columns.
            let mut r = CropRegion {
                y: 0,
                x: 0,
                c: 0,
                h,
                w,
                ch: c,
            };
            for (i, (&s, &e)) in starts.iter().zip(ends).enumerate() {
                let axis = axes.get(i).copied().unwrap_or(i as i32);
                let axis = if axis < 0 {
                    axis + input.dims as i32
                } else {
                    axis
                };
                let axis = axis + 3 - input.dims as i32;
                let size = match axis {
                    0 => c,
                    1 => h,
                    2 => w,
                    _ => return None,
                } as i64;
                let resolve = |v: i32| {
                    if v < 0 {
                        (size + v as i64).max(0)
                    } else {
                        (v as i64).min(size)
                    }
                };
                let (s, e) = (resolve(s), resolve(e));
                if e <= s {
                    return None;
                }
                let (s, len) = (s as usize, (e - s) as usize);
                match axis {
                    0 => (r.c, r.ch) = (s, len),
                    1 => (r.y, r.h) = (s, len),
                    _ => (r.x, r.w) = (s, len),
                }
            }
            r
        }
    };
    let fits = region.h > 0
        && region.w > 0
        && region.ch > 0
        && region.y + region.h <= h
        && region.x + region.w <= w
        && region.c + region.ch <= c;
    fits.then_some(region)
}

pub fn crop(input: &Tensor, r: CropRegion, out: &mut Tensor) {
    let c = input.c;
    for y in 0..r.h {
        for x in 0..r.w {
            let src = ((r.y + y) * input.w + r.x + x) * c + r.c;
            let dst = (y * r.w + x) * r.ch;
            out.data[dst..dst + r.ch].copy_from_slice(&input.data[src..src + r.ch]);
        }
    }
}

/// ncnn's concat axis for a blob with `dims` dimensions, as an index into (c, h, w).
pub fn concat_axis(axis: i32, dims: u8) -> Option<usize> {
    let a = if axis < 0 { axis + dims as i32 } else { axis };
    let a = a + 3 - dims as i32;
    (0..3).contains(&a).then_some(a as usize)
}

pub fn concat_shape(inputs: &[Shape], axis: usize) -> Option<Shape> {
    let f = inputs[0];
    let same = |t: &Shape| match axis {
        0 => t.h == f.h && t.w == f.w,
        1 => t.w == f.w && t.c == f.c,
        _ => t.h == f.h && t.c == f.c,
    };
    if !inputs.iter().all(same) {
        return None;
    }
    let sum = |g: fn(&Shape) -> usize| inputs.iter().map(g).sum();
    let (h, w, c) = match axis {
        0 => (f.h, f.w, sum(|t| t.c)),
        1 => (sum(|t| t.h), f.w, f.c),
        _ => (f.h, sum(|t| t.w), f.c),
    };
    Some(Shape {
        h,
        w,
        c,
        dims: f.dims,
    })
}

/// Joins `inputs` along `axis` into `out`.
///
/// Along channels, each output pixel is written once, whole, from every input's channels in
/// turn, rows spread over `threads`: the output streams through the cache once, where one
/// pass per input (each copying a few hundred bytes per pixel with a `memcpy` call) wrote
/// every output line once per input. In realesrgan-x4plus the dense blocks' 276 concats were
/// a quarter of the frame that way.
pub fn concat(inputs: &[&Tensor], axis: usize, out: &mut Tensor, isa: Isa, threads: usize) {
    match axis {
        0 => {
            let (oc, ow) = (out.c, out.w);
            crate::ops::par_chunks(&mut out.data, ow * oc, threads, |y, row| {
                crate::dispatch!(isa, {
                    for (x, dst) in row.chunks_exact_mut(oc).enumerate() {
                        let p = y * ow + x;
                        let mut c0 = 0;
                        for t in inputs {
                            let src = &t.data[p * t.c..(p + 1) * t.c];
                            copy_channels(src, &mut dst[c0..c0 + t.c]);
                            c0 += t.c;
                        }
                    }
                })
            });
        }
        1 => {
            let mut at = 0;
            for t in inputs {
                out.data[at..at + t.len()].copy_from_slice(&t.data);
                at += t.len();
            }
        }
        _ => {
            let row = out.w * out.c;
            let mut x0 = 0;
            for t in inputs {
                let tr = t.w * t.c;
                for y in 0..out.h {
                    out.data[y * row + x0..y * row + x0 + tr]
                        .copy_from_slice(&t.data[y * tr..(y + 1) * tr]);
                }
                x0 += tr;
            }
        }
    }
}

/// Depth-to-space. `channel_major` is ncnn's mode 1; mode 0 matches PyTorch's PixelShuffle.
pub fn pixel_shuffle(
    input: &Tensor,
    r: usize,
    channel_major: bool,
    out: &mut Tensor,
    threads: usize,
) {
    let (oc, ic, ow) = (out.c, input.c, out.w);
    crate::ops::par_chunks(&mut out.data, ow * oc, threads, |oy, row| {
        let (y, sh) = (oy / r, oy % r);
        for ox in 0..ow {
            let (x, sw) = (ox / r, ox % r);
            let src = &input.data[(y * input.w + x) * ic..][..ic];
            for (p, d) in row[ox * oc..(ox + 1) * oc].iter_mut().enumerate() {
                *d = src[shuffled_channel(r, channel_major, oc, (sh, sw), p)];
            }
        }
    });
}

/// `PixelShuffle(input) + Interp(skip)` in one pass, for a nearest `Interp` to the shuffle's
/// size: the tail of Real-ESRGAN's compact models, the network's output added to its
/// upsampled input. Three passes over the full-size frame (shuffle, resize, add: each written,
/// the two read back) become one. Equal to the three to the bit.
pub fn pixel_shuffle_add_nearest(
    (input, r, channel_major): (&Tensor, usize, bool),
    skip: &Tensor,
    out: &mut Tensor,
    threads: usize,
) {
    let (oc, ic, ow) = (out.c, input.c, out.w);
    debug_assert_eq!(skip.c, oc);
    let (ty, tx, _) = resize_taps(InterpMode::Nearest, (skip.h, skip.w), (out.h, out.w), false);
    crate::ops::par_chunks(&mut out.data, ow * oc, threads, |oy, row| {
        let (y, sh) = (oy / r, oy % r);
        let skip_row = &skip.data[ty.index[oy] * skip.w * oc..][..skip.w * oc];
        for (ox, &sx) in tx.index.iter().enumerate() {
            let (x, sw) = (ox / r, ox % r);
            let src = &input.data[(y * input.w + x) * ic..][..ic];
            let base = &skip_row[sx * oc..][..oc];
            let dst = &mut row[ox * oc..(ox + 1) * oc];
            for (p, (d, b)) in dst.iter_mut().zip(base).enumerate() {
                *d = src[shuffled_channel(r, channel_major, oc, (sh, sw), p)] + b;
            }
        }
    });
}

/// The input channel depth-to-space puts at output channel `p` of sub-pixel (`sh`, `sw`).
#[inline(always)]
fn shuffled_channel(
    r: usize,
    channel_major: bool,
    oc: usize,
    (sh, sw): (usize, usize),
    p: usize,
) -> usize {
    if channel_major {
        (sh * r + sw) * oc + p
    } else {
        p * r * r + sh * r + sw
    }
}

/// Interp's output size, computed the way ncnn does (truncating `size * scale`).
pub fn interp_shape(
    h: usize,
    w: usize,
    scale_h: f32,
    scale_w: f32,
    out_h: usize,
    out_w: usize,
) -> (usize, usize) {
    if out_h != 0 && out_w != 0 {
        (out_h, out_w)
    } else {
        ((h as f32 * scale_h) as usize, (w as f32 * scale_w) as usize)
    }
}

/// Source index and weights for each output coordinate along one axis: output `d` is
/// `sum(weights[d][k] * source[index[d] + k])` over the taps (sources clamp at the last one).
pub struct Taps {
    pub index: Vec<usize>,
    pub weights: Vec<[f32; 4]>,
}

/// ncnn's nearest rule: one tap, at `d * src / dst` rounded down.
fn nearest_taps(src: usize, dst: usize) -> Taps {
    let step = src as f32 / dst as f32;
    Taps {
        index: (0..dst)
            .map(|d| ((d as f32 * step) as usize).min(src - 1))
            .collect(),
        weights: vec![[1.0, 0.0, 0.0, 0.0]; dst],
    }
}

/// The source sample left of output coordinate `d` and the fraction past it, as ncnn maps
/// coordinates (pixel centres, or corners when `align_corner`).
fn source_position(d: usize, src: usize, dst: usize, align_corner: bool) -> (isize, f32) {
    let f = if align_corner && dst > 1 {
        (d as f64 * ((src as f64 - 1.0) / (dst as f64 - 1.0))) as f32
    } else {
        ((d as f64 + 0.5) * (src as f64 / dst as f64) - 0.5) as f32
    };
    let s = f.floor();
    (s as isize, f - s)
}

fn linear_taps(src: usize, dst: usize, align_corner: bool) -> Taps {
    let mut t = Taps {
        index: Vec::with_capacity(dst),
        weights: Vec::with_capacity(dst),
    };
    for d in 0..dst {
        let (mut s, mut f) = source_position(d, src, dst, align_corner);
        if s < 0 {
            s = 0;
            f = 0.0;
        }
        if s >= src as isize - 1 {
            s = src as isize - 2;
            f = 1.0;
        }
        if src == 1 {
            s = 0;
            f = 0.0;
        }
        t.index.push(s as usize);
        t.weights.push([1.0 - f, f, 0.0, 0.0]);
    }
    t
}

fn cubic_taps(src: usize, dst: usize, align_corner: bool) -> Taps {
    let mut t = Taps {
        index: Vec::with_capacity(dst),
        weights: Vec::with_capacity(dst),
    };
    let n = src as isize;
    for d in 0..dst {
        let (mut s, f) = source_position(d, src, dst, align_corner);
        const A: f32 = -0.75;
        let (f0, f1, f2) = (f + 1.0, f, 1.0 - f);
        let mut a = [0.0f32; 4];
        a[0] = A * f0 * f0 * f0 - 5.0 * A * f0 * f0 + 8.0 * A * f0 - 4.0 * A;
        a[1] = (A + 2.0) * f1 * f1 * f1 - (A + 3.0) * f1 * f1 + 1.0;
        a[2] = (A + 2.0) * f2 * f2 * f2 - (A + 3.0) * f2 * f2 + 1.0;
        a[3] = 1.0 - a[0] - a[1] - a[2];
        // Fold taps that fall outside onto the edge, as ncnn does.
        if s <= -1 {
            s = 1;
            a = [1.0 - a[3], a[3], 0.0, 0.0];
        }
        if s == 0 {
            s = 1;
            a = [a[0] + a[1], a[2], a[3], 0.0];
        }
        if s == n - 2 {
            s = n - 3;
            a = [0.0, a[0], a[1], a[2] + a[3]];
        }
        if s >= n - 1 {
            s = n - 3;
            a = [0.0, 0.0, a[0], 1.0 - a[0]];
        }
        // Index of the first of the four taps.
        t.index.push((s - 1).max(0) as usize);
        t.weights.push(a);
    }
    t
}

/// How `interp` samples an `ih x iw` input for an `oh x ow` output: the taps along y and x, and
/// how many each output reads (nearest 1, bilinear 2, bicubic 4; bicubic needs four source
/// pixels on both axes, else it is bilinear). Other executors use these to match the CPU.
pub fn resize_taps(
    mode: InterpMode,
    (ih, iw): (usize, usize),
    (oh, ow): (usize, usize),
    align_corner: bool,
) -> (Taps, Taps, usize) {
    match mode {
        InterpMode::Nearest => (nearest_taps(ih, oh), nearest_taps(iw, ow), 1),
        InterpMode::Bicubic if ih >= 4 && iw >= 4 => (
            cubic_taps(ih, oh, align_corner),
            cubic_taps(iw, ow, align_corner),
            4,
        ),
        _ => (
            linear_taps(ih, oh, align_corner),
            linear_taps(iw, ow, align_corner),
            2,
        ),
    }
}

pub fn interp(
    input: &Tensor,
    mode: InterpMode,
    align_corner: bool,
    out: &mut Tensor,
    threads: usize,
) {
    let (ih, iw, c) = (input.h, input.w, input.c);
    let (oh, ow) = (out.h, out.w);
    let (ty, tx, n) = resize_taps(mode, (ih, iw), (oh, ow), align_corner);
    if n == 1 {
        crate::ops::par_chunks(&mut out.data, ow * c, threads, |y, row| {
            let sy = ty.index[y];
            for (x, &sx) in tx.index.iter().enumerate() {
                row[x * c..(x + 1) * c].copy_from_slice(&input.data[(sy * iw + sx) * c..][..c]);
            }
        });
        return;
    }
    // Horizontal pass per source row, then vertical, matching ncnn's order of summation.
    let mut rows = vec![0.0f32; ih * ow * c];
    for y in 0..ih {
        for x in 0..ow {
            let dst = &mut rows[(y * ow + x) * c..][..c];
            let (s, a) = (tx.index[x], tx.weights[x]);
            for (k, &wk) in a.iter().enumerate().take(n) {
                let src = &input.data[(y * iw + (s + k).min(iw - 1)) * c..][..c];
                dst.iter_mut().zip(src).for_each(|(d, v)| *d += v * wk);
            }
        }
    }
    out.data.fill(0.0);
    for y in 0..oh {
        let (s, b) = (ty.index[y], ty.weights[y]);
        let dst = &mut out.data[y * ow * c..(y + 1) * ow * c];
        for (k, &wk) in b.iter().enumerate().take(n) {
            let src = &rows[(s + k).min(ih - 1) * ow * c..][..ow * c];
            dst.iter_mut().zip(src).for_each(|(d, v)| *d += v * wk);
        }
    }
}
