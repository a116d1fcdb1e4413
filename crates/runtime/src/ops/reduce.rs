//! Operators that reduce a frame to a vector: global pooling and fully connected layers (the
//! squeeze-excitation blocks of Real-CUGAN and waifu2x cunet).

use crate::graph::Activation;
use crate::kernels::gemm::{gemm, PackedB};
use crate::kernels::{math, Isa};
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

/// A fully connected layer with its weights packed for the GEMM kernels.
#[derive(Debug)]
pub struct InnerProduct {
    /// `[in][out]`: the transposed weight matrix, so the input vector is one GEMM row.
    b: PackedB,
    bias: Vec<f32>,
    act: Activation,
    isa: Isa,
}

impl InnerProduct {
    /// `weights` in ncnn order, `[out][in]`.
    pub fn new(weights: &[f32], bias: &[f32], act: &Activation, isa: Isa) -> Self {
        let (outputs, inputs) = (bias.len(), weights.len() / bias.len().max(1));
        let b = PackedB::new(isa, inputs, outputs, |i, o| weights[o * inputs + i]);
        InnerProduct {
            b,
            bias: bias.to_vec(),
            act: act.clone(),
            isa,
        }
    }

    pub fn inputs(&self) -> usize {
        self.b.k
    }

    pub fn outputs(&self) -> usize {
        self.b.n
    }

    /// Runs on the input flattened in ncnn's planar order.
    pub fn run(&self, input: &Tensor) -> Tensor {
        let flat = if input.dims == 3 && input.c > 1 && input.pixels() > 1 {
            input.to_chw()
        } else {
            input.data.clone()
        };
        let mut out = vec![0.0; self.outputs()];
        gemm(
            self.isa,
            1,
            &flat,
            flat.len(),
            &self.b,
            &mut out,
            self.outputs(),
        );
        let n = out.len();
        math::bias_activation(&mut out, n, Some(&self.bias), &self.act);
        Tensor::vector(out)
    }
}
