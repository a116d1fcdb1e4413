//! What the operators' unit tests share: a convolution with varied weights, a varied input,
//! and an element-wise comparison.

use crate::graph::{Activation, ConvSpec, Padding};
use crate::tensor::Tensor;

/// A square kernel `k` at `stride`, padding `pad` on every side, weights and biases all
/// different (a weight read at the wrong offset shows).
pub fn spec(
    in_c: usize,
    out_c: usize,
    k: usize,
    stride: usize,
    pad: usize,
    act: Activation,
) -> ConvSpec {
    ConvSpec {
        out_c,
        in_c,
        kh: k,
        kw: k,
        stride_h: stride,
        stride_w: stride,
        dil_h: 1,
        dil_w: 1,
        pad: Padding {
            left: pad,
            right: pad,
            top: pad,
            bottom: pad,
        },
        out_pad_right: 0,
        out_pad_bottom: 0,
        weights: (0..out_c * in_c * k * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 150.0)
            .collect(),
        bias: (0..out_c).map(|o| o as f32 * 0.01 - 0.1).collect(),
        act,
    }
}

/// A shape an operator is tested at: `in_c -> out_c`, square kernel `k` at `stride` with
/// padding `pad`, on an `h x w` input.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub in_c: usize,
    pub out_c: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub h: usize,
    pub w: usize,
}

impl Case {
    /// The convolution of this shape with a leaky ReLU.
    pub fn spec(&self) -> ConvSpec {
        let act = Activation::Relu { slope: 0.1 };
        spec(self.in_c, self.out_c, self.k, self.stride, self.pad, act)
    }

    pub fn input(&self) -> Tensor {
        input(self.h, self.w, self.in_c)
    }
}

/// Cases from `(in_c, out_c, k, stride, pad, h, w)` rows.
pub fn cases(rows: &[[usize; 7]]) -> Vec<Case> {
    rows.iter()
        .map(|&[in_c, out_c, k, stride, pad, h, w]| Case {
            in_c,
            out_c,
            k,
            stride,
            pad,
            h,
            w,
        })
        .collect()
}

/// An `h x w x c` input of values in [-1, 1], neighbours different.
pub fn input(h: usize, w: usize, c: usize) -> Tensor {
    let data = (0..h * w * c)
        .map(|i| ((i * 13 % 29) as f32 - 14.0) / 14.0)
        .collect();
    Tensor::from_vec(h, w, c, data)
}

/// Every element of `got` within `rel * (1 + |want|)` of `want`'s.
pub fn assert_close(got: &[f32], want: &[f32], rel: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, e)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - e).abs() <= rel * (1.0 + e.abs()),
            "{what}: {i}: {g} vs {e}"
        );
    }
}
