//! The graph lowered to the executor's steps, with everything they need already on the device:
//! weights in the layouts cuDNN wants, constants as fp16 blobs. An activation is folded into
//! the convolution before it when nothing else reads that convolution's output; layers the
//! kernels do not take whole (a Scale with stored data and a bias, an Eltwise of three inputs,
//! a convolution padded unevenly) become several steps through blobs of their own.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream};
use half::f16;
use vsr_runtime::graph::{
    Activation, BinaryKind, ConvSpec, CropSpec, EltwiseKind, Graph, InterpMode, Op,
};
use vsr_runtime::Tensor;

use crate::executor::CudaPlanError;

/// A blob on the device: fp16, channels last.
#[derive(Clone)]
pub(crate) struct Blob {
    pub data: Arc<CudaSlice<f16>>,
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

/// An activation as `kernels.cu`'s `activate` takes it.
pub(crate) struct Act {
    pub mode: i32,
    pub p0: f32,
    pub p1: f32,
    /// PReLU's slopes (one unused value otherwise).
    pub slopes: CudaSlice<f32>,
}

/// `activate`'s mode and parameters for `a` (PReLU's slopes go separately).
pub(crate) fn activation_mode(a: &Activation) -> (i32, f32, f32) {
    match a {
        Activation::Identity => (0, 0.0, 0.0),
        Activation::Relu { slope } => (1, *slope, 0.0),
        Activation::PRelu(s) if s.len() == 1 => (3, 0.0, 0.0),
        Activation::PRelu(_) => (2, 0.0, 0.0),
        Activation::Sigmoid => (4, 0.0, 0.0),
        Activation::Swish => (5, 0.0, 0.0),
        Activation::Mish => (6, 0.0, 0.0),
        Activation::HardSwish { alpha, beta } => (7, *alpha, *beta),
        Activation::Clip { min, max } => (8, *min, *max),
        Activation::TanH => (9, 0.0, 0.0),
    }
}

impl Act {
    fn upload(stream: &Arc<CudaStream>, a: &Activation) -> Result<Act, CudaPlanError> {
        let (mode, p0, p1) = activation_mode(a);
        let slopes = match a {
            Activation::PRelu(s) => stream.memcpy_stod(s)?,
            _ => stream.memcpy_stod(&[0.0f32])?,
        };
        Ok(Act {
            mode,
            p0,
            p1,
            slopes,
        })
    }

    fn is_identity(&self) -> bool {
        self.mode == 0
    }
}

pub(crate) struct Conv {
    pub in_c: usize,
    pub out_c: usize,
    pub k: (usize, usize),
    pub stride: (usize, usize),
    pub dil: (usize, usize),
    /// Top and left (bottom and right are the same; uneven padding is a `Step::Pad` before).
    pub pad: (usize, usize),
    /// `[out][kh][kw][in]` for a convolution, `[in][kh][kw][out]` for a transposed one.
    pub weights: CudaSlice<f16>,
    pub bias: CudaSlice<f32>,
    pub act: Act,
}

impl Conv {
    /// `spec` on the device, its weights as cuDNN wants them for NHWC: `[out][kh][kw][in]` for
    /// a convolution, `[in][kh][kw][out]` for a transposed one (backward-data's filter).
    fn upload(
        stream: &Arc<CudaStream>,
        c: &ConvSpec,
        transposed: bool,
    ) -> Result<Conv, CudaPlanError> {
        let (kh, kw) = (c.kh, c.kw);
        let mut w = vec![f16::ZERO; c.weights.len()];
        for o in 0..c.out_c {
            for i in 0..c.in_c {
                for y in 0..kh {
                    for x in 0..kw {
                        let at = if transposed {
                            ((i * kh + y) * kw + x) * c.out_c + o
                        } else {
                            ((o * kh + y) * kw + x) * c.in_c + i
                        };
                        w[at] = f16::from_f32(c.weights[((o * c.in_c + i) * kh + y) * kw + x]);
                    }
                }
            }
        }
        let bias = if c.bias.is_empty() {
            vec![0.0; c.out_c]
        } else {
            c.bias.clone()
        };
        Ok(Conv {
            in_c: c.in_c,
            out_c: c.out_c,
            k: (kh, kw),
            stride: (c.stride_h, c.stride_w),
            dil: (c.dil_h, c.dil_w),
            pad: if evenly_padded(c) {
                (c.pad.top, c.pad.left)
            } else {
                (0, 0)
            },
            weights: stream.memcpy_stod(&w)?,
            bias: stream.memcpy_stod(&bias)?,
            act: Act::upload(stream, &c.act)?,
        })
    }
}

fn evenly_padded(c: &ConvSpec) -> bool {
    c.pad.top == c.pad.bottom && c.pad.left == c.pad.right
}

pub(crate) struct Dense {
    pub inputs: usize,
    pub outputs: usize,
    pub weights: CudaSlice<f32>,
    pub bias: CudaSlice<f32>,
    pub act: Act,
}

/// The second operand of a binary step.
pub(crate) enum Operand {
    /// The step's second input.
    Input,
    Scalar(f32),
    Constant(Blob),
}

pub(crate) enum Step {
    Conv(Box<Conv>),
    /// Transposed convolution (cuDNN backward-data), bias and activation fused after.
    Deconv(Box<Conv>),
    /// A zero border (before a convolution padded unevenly).
    Pad {
        top: usize,
        left: usize,
        bottom: usize,
        right: usize,
    },
    /// An activation whose input other layers also read.
    Act(Act),
    /// `kernels.cu`'s `binary` with this op code, broadcasting as ncnn does.
    Binary {
        op: i32,
        operand: Operand,
    },
    /// `ca * a + cb * b`.
    Sum(f32, f32),
    PixelShuffle(usize),
    Resample {
        mode: InterpMode,
        scale: (f32, f32),
        size: (usize, usize),
        align_corner: bool,
    },
    /// Channel concatenation of every input.
    Concat,
    /// Global average (or max) pooling to one value per channel.
    Pool {
        max: bool,
    },
    /// A fully connected layer on a per-channel vector.
    Dense(Box<Dense>),
    Crop(CropSpec),
    /// MemoryData: a blob uploaded once.
    Constant(Blob),
    /// Split: the outputs share the input's buffer.
    Alias,
}

pub(crate) struct Node {
    pub step: Step,
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
}

/// The steps in order, how many blobs they use (the graph's and the lowering's own), and each
/// blob's last reader, so its memory goes back as soon as possible.
pub(crate) struct Lowered {
    pub nodes: Vec<Node>,
    pub blob_count: usize,
    pub last_use: Vec<usize>,
}

/// Lowers `graph`, uploading its weights and constants through `stream`.
pub(crate) fn lower(graph: &Graph, stream: &Arc<CudaStream>) -> Result<Lowered, CudaPlanError> {
    let missing = unsupported_layers(graph);
    if !missing.is_empty() {
        return Err(CudaPlanError::Unsupported(missing.join(", ")));
    }
    let mut readers = vec![0usize; graph.blob_names.len()];
    for n in &graph.nodes {
        for &i in &n.inputs {
            readers[i] += 1;
        }
    }
    let mut out = Builder {
        stream,
        nodes: Vec::new(),
        blob_count: graph.blob_names.len(),
    };
    for n in &graph.nodes {
        let (inputs, outputs) = (n.inputs.clone(), n.outputs.clone());
        let step = match &n.op {
            Op::Input { .. } => continue,
            Op::Split | Op::Identity => Step::Alias,
            Op::Convolution(c) => {
                let mut inputs = inputs;
                if !evenly_padded(c) {
                    let padded = out.blob();
                    let p = c.pad;
                    let pad = Step::Pad {
                        top: p.top,
                        left: p.left,
                        bottom: p.bottom,
                        right: p.right,
                    };
                    out.push(pad, inputs, vec![padded]);
                    inputs = vec![padded];
                }
                out.push(
                    Step::Conv(Box::new(Conv::upload(stream, c, false)?)),
                    inputs,
                    outputs,
                );
                continue;
            }
            Op::Deconvolution(c) => Step::Deconv(Box::new(Conv::upload(stream, c, true)?)),
            Op::Activation(a) => {
                if out.fold_activation(a, inputs[0], readers[inputs[0]], &outputs)? {
                    continue;
                }
                Step::Act(Act::upload(stream, a)?)
            }
            Op::BinaryOp { kind, scalar } => Step::Binary {
                op: op_code(*kind),
                operand: scalar.map_or(Operand::Input, Operand::Scalar),
            },
            Op::Scale { scale: None, .. } => Step::Binary {
                op: op_code(BinaryKind::Mul),
                operand: Operand::Input,
            },
            Op::Scale {
                scale: Some(scale),
                bias,
            } => {
                let vector = |v: &[f32]| out.constant(&Tensor::from_vec(1, 1, v.len(), v.to_vec()));
                let times = Step::Binary {
                    op: op_code(BinaryKind::Mul),
                    operand: Operand::Constant(vector(scale)?),
                };
                match bias {
                    None => times,
                    Some(bias) => {
                        let plus = Step::Binary {
                            op: op_code(BinaryKind::Add),
                            operand: Operand::Constant(vector(bias)?),
                        };
                        let scaled = out.blob();
                        out.push(times, inputs, vec![scaled]);
                        out.push(plus, vec![scaled], outputs);
                        continue;
                    }
                }
            }
            Op::Eltwise { kind, coeffs } => {
                let coeff = |i: usize| coeffs.get(i).copied().unwrap_or(1.0);
                let (first, rest): (Step, Box<dyn Fn(usize) -> Step + '_>) = match kind {
                    EltwiseKind::Sum => (
                        Step::Sum(coeff(0), coeff(1)),
                        Box::new(move |i| Step::Sum(1.0, coeff(i))),
                    ),
                    EltwiseKind::Prod | EltwiseKind::Max => {
                        let op = op_code(match kind {
                            EltwiseKind::Prod => BinaryKind::Mul,
                            _ => BinaryKind::Max,
                        });
                        let step = move |_| Step::Binary {
                            op,
                            operand: Operand::Input,
                        };
                        (step(0), Box::new(step))
                    }
                };
                out.chain(&inputs, outputs, first, rest);
                continue;
            }
            Op::Concat { .. } => Step::Concat,
            Op::GlobalPool { max } => Step::Pool { max: *max },
            Op::InnerProduct {
                out: outputs_n,
                weights,
                bias,
                act,
            } => {
                let bias = if bias.is_empty() {
                    vec![0.0; *outputs_n]
                } else {
                    bias.clone()
                };
                Step::Dense(Box::new(Dense {
                    inputs: weights.len() / outputs_n,
                    outputs: *outputs_n,
                    weights: stream.memcpy_stod(weights)?,
                    bias: stream.memcpy_stod(&bias)?,
                    act: Act::upload(stream, act)?,
                }))
            }
            Op::PixelShuffle { factor, .. } => Step::PixelShuffle(*factor),
            Op::Interp {
                mode,
                scale_h,
                scale_w,
                out_h,
                out_w,
                align_corner,
            } => Step::Resample {
                mode: *mode,
                scale: (*scale_h, *scale_w),
                size: (*out_h, *out_w),
                align_corner: *align_corner,
            },
            Op::Crop(spec) => Step::Crop(spec.clone()),
            Op::MemoryData(t) => Step::Constant(out.constant(t)?),
        };
        out.push(step, inputs, outputs);
    }
    let mut last_use = vec![usize::MAX; out.blob_count];
    for (i, n) in out.nodes.iter().enumerate() {
        for &b in &n.inputs {
            last_use[b] = i;
        }
    }
    Ok(Lowered {
        nodes: out.nodes,
        blob_count: out.blob_count,
        last_use,
    })
}

struct Builder<'a> {
    stream: &'a Arc<CudaStream>,
    nodes: Vec<Node>,
    blob_count: usize,
}

impl Builder<'_> {
    fn push(&mut self, step: Step, inputs: Vec<usize>, outputs: Vec<usize>) {
        self.nodes.push(Node {
            step,
            inputs,
            outputs,
        });
    }

    /// A blob of the lowering's own, between two steps of one layer.
    fn blob(&mut self) -> usize {
        self.blob_count += 1;
        self.blob_count - 1
    }

    fn constant(&self, t: &Tensor) -> Result<Blob, CudaPlanError> {
        let half: Vec<f16> = t.data.iter().map(|&v| f16::from_f32(v)).collect();
        Ok(Blob {
            data: Arc::new(self.stream.memcpy_stod(&half)?),
            h: t.h,
            w: t.w,
            c: t.c,
        })
    }

    /// Makes `a` the epilogue of the convolution that produced `input`, when that was the last
    /// step, it has no activation yet and nothing else reads its output.
    fn fold_activation(
        &mut self,
        a: &Activation,
        input: usize,
        readers: usize,
        outputs: &[usize],
    ) -> Result<bool, CudaPlanError> {
        let Some(prev) = self.nodes.last_mut() else {
            return Ok(false);
        };
        let (Step::Conv(conv) | Step::Deconv(conv)) = &mut prev.step else {
            return Ok(false);
        };
        if prev.outputs != [input] || readers != 1 || !conv.act.is_identity() {
            return Ok(false);
        }
        conv.act = Act::upload(self.stream, a)?;
        prev.outputs = outputs.to_vec();
        Ok(true)
    }

    /// A layer of several inputs as two-input steps left to right: `first` on the first two,
    /// then `next(i)` on that result and input `i`.
    fn chain(
        &mut self,
        inputs: &[usize],
        outputs: Vec<usize>,
        first: Step,
        next: Box<dyn Fn(usize) -> Step + '_>,
    ) {
        let mut acc = inputs[0];
        let mut step = first;
        for i in 1..inputs.len() {
            let to = if i + 1 == inputs.len() {
                outputs.clone()
            } else {
                vec![self.blob()]
            };
            let following = next(i + 1);
            let done = std::mem::replace(&mut step, following);
            self.push(done, vec![acc, inputs[i]], to.clone());
            acc = to[0];
        }
    }
}

/// `kernels.cu`'s `binary` op codes.
pub(crate) fn op_code(kind: BinaryKind) -> i32 {
    match kind {
        BinaryKind::Add => 0,
        BinaryKind::Sub => 1,
        BinaryKind::Mul => 2,
        BinaryKind::Div => 3,
        BinaryKind::Max => 4,
        BinaryKind::Min => 5,
        BinaryKind::Pow => 6,
        BinaryKind::RSub => 7,
        BinaryKind::RDiv => 8,
    }
}

/// The layers this executor cannot run yet, by type, without duplicates.
pub fn unsupported_layers(graph: &Graph) -> Vec<String> {
    let mut missing: Vec<String> = Vec::new();
    for n in &graph.nodes {
        let ok = match &n.op {
            Op::Deconvolution(c) => {
                evenly_padded(c) && c.out_pad_right == 0 && c.out_pad_bottom == 0
            }
            Op::PixelShuffle { channel_major, .. } => !channel_major,
            Op::Concat { axis } => matches!(axis, 0 | -3),
            Op::Eltwise { .. } => n.inputs.len() >= 2,
            _ => true,
        };
        if !ok && !missing.contains(&n.kind) {
            missing.push(n.kind.clone());
        }
    }
    missing
}
