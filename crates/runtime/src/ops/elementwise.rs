//! Element-wise operators: BinaryOp with ncnn's broadcasting, Eltwise, per-channel Scale and
//! stand-alone activations.

use crate::graph::{Activation, BinaryKind, EltwiseKind};
use crate::kernels::{math, Isa};
use crate::tensor::{Shape, Tensor};

#[inline(always)]
fn apply(kind: BinaryKind, a: f32, b: f32) -> f32 {
    match kind {
        BinaryKind::Add => a + b,
        BinaryKind::Sub => a - b,
        BinaryKind::Mul => a * b,
        BinaryKind::Div => a / b,
        BinaryKind::Max => a.max(b),
        BinaryKind::Min => a.min(b),
        BinaryKind::Pow => a.powf(b),
        BinaryKind::RSub => b - a,
        BinaryKind::RDiv => b / a,
    }
}

/// Output shape of a broadcasting binary op: each of h, w, c equal or 1.
pub fn broadcast_shape(a: Shape, b: Shape) -> Option<Shape> {
    let dim = |x: usize, y: usize| (x == y || x == 1 || y == 1).then_some(x.max(y));
    Some(Shape {
        h: dim(a.h, b.h)?,
        w: dim(a.w, b.w)?,
        c: dim(a.c, b.c)?,
        dims: a.dims.max(b.dims),
    })
}

/// `a op scalar`, in place.
pub fn binary_scalar(isa: Isa, kind: BinaryKind, a: &mut Tensor, scalar: f32) {
    crate::dispatch!(isa, {
        for v in a.data.iter_mut() {
            *v = apply(kind, *v, scalar);
        }
    })
}

/// `a op= b` for `b` of the same shape or per-channel, in place and in parallel.
pub fn binary_in_place(isa: Isa, kind: BinaryKind, a: &mut Tensor, b: &Tensor, threads: usize) {
    let c = a.c;
    let per_channel = b.len() == c && a.len() != c;
    let rows = (a.len() / c / threads.max(1) / 4).max(1) * c;
    crate::ops::par_chunks(&mut a.data, rows, threads, |i, chunk| {
        crate::dispatch!(isa, {
            if per_channel {
                for row in chunk.chunks_exact_mut(c) {
                    row.iter_mut()
                        .zip(&b.data)
                        .for_each(|(x, y)| *x = apply(kind, *x, *y));
                }
            } else {
                let other = &b.data[i * rows..i * rows + chunk.len()];
                chunk
                    .iter_mut()
                    .zip(other)
                    .for_each(|(x, y)| *x = apply(kind, *x, *y));
            }
        })
    });
}

/// Whether `binary_in_place` can compute `a op b` into `a`.
pub fn can_run_in_place(a: Shape, b: Shape) -> bool {
    (a.h == b.h && a.w == b.w && a.c == b.c) || (b.h == 1 && b.w == 1 && b.c == a.c)
}

/// `a op b` with broadcasting; `out` has the broadcast shape.
pub fn binary(isa: Isa, kind: BinaryKind, a: &Tensor, b: &Tensor, out: &mut Tensor) {
    crate::dispatch!(isa, {
        if a.h == b.h && a.w == b.w && a.c == b.c {
            for ((o, x), y) in out.data.iter_mut().zip(&a.data).zip(&b.data) {
                *o = apply(kind, *x, *y);
            }
        } else if b.h == 1 && b.w == 1 && b.c == a.c && out.c == a.c {
            // Per-channel: the common case of a vector or [c,1,1] constant.
            for (orow, arow) in out.data.chunks_exact_mut(a.c).zip(a.data.chunks_exact(a.c)) {
                for ((o, x), y) in orow.iter_mut().zip(arow).zip(&b.data) {
                    *o = apply(kind, *x, *y);
                }
            }
        } else {
            let at = |t: &Tensor, y: usize, x: usize, c: usize| {
                t.data[((y % t.h) * t.w + (x % t.w)) * t.c + (c % t.c)]
            };
            let (oh, ow, oc) = (out.h, out.w, out.c);
            for y in 0..oh {
                for x in 0..ow {
                    for c in 0..oc {
                        out.data[(y * ow + x) * oc + c] =
                            apply(kind, at(a, y, x, c), at(b, y, x, c));
                    }
                }
            }
        }
    })
}

/// Eltwise over inputs of one shape: `out` holds the first input and receives the result;
/// `rest` are the others.
pub fn eltwise(isa: Isa, kind: EltwiseKind, coeffs: &[f32], out: &mut Tensor, rest: &[&Tensor]) {
    crate::dispatch!(isa, {
        let coeff = |i: usize| coeffs.get(i).copied().unwrap_or(1.0);
        match kind {
            EltwiseKind::Sum => {
                let c0 = coeff(0);
                if c0 != 1.0 {
                    out.data.iter_mut().for_each(|v| *v *= c0);
                }
                for (i, t) in rest.iter().enumerate().map(|(i, t)| (i + 1, t)) {
                    let ci = coeff(i);
                    for (o, x) in out.data.iter_mut().zip(&t.data) {
                        *o += ci * x;
                    }
                }
            }
            EltwiseKind::Prod => {
                for t in rest {
                    out.data.iter_mut().zip(&t.data).for_each(|(o, x)| *o *= x);
                }
            }
            EltwiseKind::Max => {
                for t in rest {
                    out.data
                        .iter_mut()
                        .zip(&t.data)
                        .for_each(|(o, x)| *o = o.max(*x));
                }
            }
        }
    })
}

/// Multiplies each channel by `scale[c]` and adds `bias[c]`, in place.
pub fn scale(isa: Isa, data: &mut Tensor, scale: &[f32], bias: Option<&[f32]>) {
    let c = data.c;
    crate::dispatch!(isa, {
        for row in data.data.chunks_exact_mut(c) {
            for (v, s) in row.iter_mut().zip(scale) {
                *v *= s;
            }
            if let Some(b) = bias {
                row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
            }
        }
    })
}

/// A stand-alone activation, in place.
pub fn activation(isa: Isa, data: &mut Tensor, act: &Activation) {
    let c = data.c;
    crate::dispatch!(isa, { math::activation(&mut data.data, c, act) })
}
