//! Element-wise math written so that LLVM vectorises it: no branches, no libm calls.

use crate::graph::Activation;

/// exp(x) to about 2 ulp over the f32 range, in vectorisable form (Cephes' polynomial).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.7);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[inline(always)]
fn tanh(x: f32) -> f32 {
    let e = exp(2.0 * x.clamp(-15.0, 15.0));
    (e - 1.0) / (e + 1.0)
}

#[inline(always)]
fn softplus(x: f32) -> f32 {
    // log(1 + e^x), exact enough for Mish; large x passes through.
    if x > 20.0 {
        x
    } else {
        (1.0 + exp(x)).ln()
    }
}

/// `a * b + c`, rounded once where `FUSED` (for kernels compiled for an ISA with the
/// instruction, `Isa::fused_multiply_add`), twice elsewhere: without the instruction, a fused
/// multiply-add is a library call per value.
#[inline(always)]
pub fn mul_add<const FUSED: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FUSED {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Adds `bias` (one value per channel) and applies `act` to channels-last rows of `c` values.
#[inline(always)]
pub fn bias_activation(data: &mut [f32], c: usize, bias: Option<&[f32]>, act: &Activation) {
    debug_assert_eq!(data.len() % c.max(1), 0);
    if let Some(b) = bias {
        for row in data.chunks_exact_mut(c) {
            for (v, b) in row.iter_mut().zip(b) {
                *v += b;
            }
        }
    }
    activation(data, c, act);
}

/// The slope per channel (`n` of them) of an activation that is `if v < 0 { v * slope }
/// else { v }` (identity, ReLU, leaky and parametric ReLU), for kernels that apply it from
/// registers as they store; `None` for the others, which [`activation`] applies.
pub fn negative_slopes(act: &Activation, n: usize) -> Option<Vec<f32>> {
    match act {
        Activation::Identity => Some(vec![1.0; n]),
        Activation::Relu { slope } => Some(vec![*slope; n]),
        Activation::PRelu(s) if s.len() == 1 => Some(vec![s[0]; n]),
        Activation::PRelu(s) => {
            let mut s = s.clone();
            s.resize(n, 0.0);
            Some(s)
        }
        _ => None,
    }
}

/// Applies `act` in place to channels-last rows of `c` values.
#[inline(always)]
pub fn activation(data: &mut [f32], c: usize, act: &Activation) {
    match act {
        Activation::Identity => {}
        Activation::Relu { slope } => {
            let s = *slope;
            for v in data.iter_mut() {
                *v = if *v < 0.0 { *v * s } else { *v };
            }
        }
        Activation::Clip { min, max } => {
            for v in data.iter_mut() {
                *v = v.max(*min).min(*max);
            }
        }
        Activation::Sigmoid => data.iter_mut().for_each(|v| *v = sigmoid(*v)),
        Activation::Swish => data.iter_mut().for_each(|v| *v *= sigmoid(*v)),
        Activation::TanH => data.iter_mut().for_each(|v| *v = tanh(*v)),
        Activation::Mish => data.iter_mut().for_each(|v| *v *= tanh(softplus(*v))),
        Activation::HardSwish { alpha, beta } => {
            let upper = (1.0 - beta) / alpha;
            let lower = -beta / alpha;
            for v in data.iter_mut() {
                *v = if *v < lower {
                    0.0
                } else if *v > upper {
                    *v
                } else {
                    *v * (*v * alpha + beta)
                };
            }
        }
        Activation::PRelu(slopes) if slopes.len() == 1 => {
            let s = slopes[0];
            for v in data.iter_mut() {
                *v = if *v < 0.0 { *v * s } else { *v };
            }
        }
        Activation::PRelu(slopes) => {
            for row in data.chunks_exact_mut(c) {
                for (v, s) in row.iter_mut().zip(slopes) {
                    *v = if *v < 0.0 { *v * s } else { *v };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_is_accurate() {
        for i in -800..800 {
            let x = i as f32 * 0.1;
            let (a, b) = (super::exp(x), x.exp());
            assert!(((a - b) / b).abs() < 2e-6, "exp({x}) = {a}, want {b}");
        }
    }
}
