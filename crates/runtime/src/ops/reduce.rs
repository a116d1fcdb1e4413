//! Operators that reduce a frame to a vector: global pooling and fully connected layers (the
//! squeeze-excitation blocks of Real-CUGAN and waifu2x cunet).

use crate::graph::Activation;
use crate::kernels::math;
use crate::tensor::Tensor;

pub fn global_pool(input: &Tensor, max: bool) -> Tensor {
    let c = input.c;
    let mut acc = vec![if max { f32::NEG_INFINITY } else { 0.0 }; c];
    for px in input.data.chunks_exact(c) {
        for (a, v) in acc.iter_mut().zip(px) {
            *a = if max { a.max(*v) } else { *a + v };
        }
    }
    if !max {
        let n = input.pixels() as f32;
        acc.iter_mut().for_each(|a| *a /= n);
    }
    Tensor::vector(acc)
}

/// Fully connected layer on the input flattened in ncnn's planar order.
pub fn inner_product(input: &Tensor, weights: &[f32], bias: &[f32], act: &Activation) -> Tensor {
    let flat = if input.dims == 3 && input.c > 1 && input.pixels() > 1 {
        input.to_chw()
    } else {
        input.data.clone()
    };
    let n = flat.len();
    let mut out: Vec<f32> = bias
        .iter()
        .enumerate()
        .map(|(o, b)| {
            b + weights[o * n..(o + 1) * n]
                .iter()
                .zip(&flat)
                .map(|(w, x)| w * x)
                .sum::<f32>()
        })
        .collect();
    let len = out.len();
    math::activation(&mut out, len, act);
    Tensor::vector(out)
}
