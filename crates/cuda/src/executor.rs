//! The CUDA executor: the graph's convolutions through cuDNN in fp16 NHWC on tensor cores, with
//! bias and activation fused into one NVRTC kernel after each; pixel shuffle, nearest
//! interpolation and addition as NVRTC kernels. Graphs with other layers are refused with the
//! list of what is missing, and run on the CPU instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::cudnn::{
    sys as dnn, ConvBackwardData, ConvDescriptor, ConvForward, Cudnn, FilterDescriptor,
    TensorDescriptor,
};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use half::f16;
use vsr_runtime::graph::{
    Activation, BinaryKind, ConvSpec, CropSpec, EltwiseKind, Graph, InterpMode, Op,
};
use vsr_runtime::{Executor, RunError, Tensor};

const KERNELS: &str = r#"
typedef unsigned short h16;
__device__ __forceinline__ float h2f(h16 h) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
__device__ __forceinline__ h16 f2h(float f) { h16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
#define INDEX long i = blockIdx.x * (long)blockDim.x + threadIdx.x; if (i >= n) return;

// mode 0: bias only; 1: leaky ReLU with `slope` (0 = ReLU); 2: PReLU per channel; 3: one slope.
extern "C" __global__ void bias_act(h16* y, const float* bias, const float* slopes, long n, int c, int mode, float slope) {
    INDEX
    int ch = i % c;
    float v = h2f(y[i]) + bias[ch];
    if (mode == 1) v = v > 0.f ? v : v * slope;
    else if (mode == 2) v = v > 0.f ? v : v * slopes[ch];
    else if (mode == 3) v = v > 0.f ? v : v * slopes[0];
    y[i] = f2h(v);
}

extern "C" __global__ void pixel_shuffle(const h16* x, h16* y, long n, int w, int cout, int r) {
    INDEX
    int c = i % cout;
    long p = i / cout;
    int X = p % (w * r), Y = p / (w * r);
    int cin = c * r * r + (Y % r) * r + (X % r);
    y[i] = x[((long)(Y / r) * w + X / r) * (cout * r * r) + cin];
}

// Nearest, bilinear and bicubic resizing as ncnn samples them: per output row and column, the
// first source sample and `taps` weights (samples clamp at the last one).
extern "C" __global__ void resample(const h16* x, h16* y, long n, int ih, int iw, int ow, int c, int taps,
                                   const int* iy, const float* wy, const int* ix, const float* wx) {
    INDEX
    int ch = i % c;
    long p = i / c;
    int X = p % ow, Y = p / ow;
    float acc = 0.f;
    for (int a = 0; a < taps; a++) {
        int sy = min(iy[Y] + a, ih - 1);
        float row = 0.f;
        for (int b = 0; b < taps; b++) {
            int sx = min(ix[X] + b, iw - 1);
            row += wx[X * 4 + b] * h2f(x[((long)sy * iw + sx) * c + ch]);
        }
        acc += wy[Y * 4 + a] * row;
    }
    y[i] = f2h(acc);
}

// y = ca * a + cb * b (Eltwise sum with coefficients; plain addition is 1, 1).
extern "C" __global__ void axpby(const h16* a, const h16* b, h16* y, long n, float ca, float cb) {
    INDEX
    y[i] = f2h(ca * h2f(a[i]) + cb * h2f(b[i]));
}

// One input of a channel concatenation: its `cx` channels at `offset` of `ctot`.
extern "C" __global__ void copy_channels(const h16* x, h16* y, long n, int cx, int ctot, int offset) {
    INDEX
    y[(i / cx) * ctot + offset + i % cx] = x[i];
}

// Squeeze-excitation: the mean of each channel (one block per channel).
extern "C" __global__ void channel_mean(const h16* x, h16* y, long hw, int c) {
    __shared__ float part[256];
    int ch = blockIdx.x;
    float s = 0.f;
    for (long p = threadIdx.x; p < hw; p += blockDim.x) s += h2f(x[p * c + ch]);
    part[threadIdx.x] = s;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k /= 2) {
        if (threadIdx.x < k) part[threadIdx.x] += part[threadIdx.x + k];
        __syncthreads();
    }
    if (threadIdx.x == 0) y[ch] = f2h(part[0] / (float)hw);
}

// A small fully connected layer: mode 0 none, 1 leaky ReLU (`slope`), 4 sigmoid.
extern "C" __global__ void dense(const h16* x, const float* w, const float* b, h16* y, int in, int out, int mode, float slope) {
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= out) return;
    float s = b[o];
    for (int i = 0; i < in; i++) s += w[(long)o * in + i] * h2f(x[i]);
    if (mode == 1) s = s > 0.f ? s : s * slope;
    else if (mode == 4) s = 1.f / (1.f + __expf(-s));
    y[o] = f2h(s);
}

// Each channel of `x` times that channel's entry of `s`.
extern "C" __global__ void scale_channels(const h16* x, const h16* s, h16* y, long n, int c) {
    INDEX
    y[i] = f2h(h2f(x[i]) * h2f(s[i % c]));
}

// An `oh x ow x oc` window of `x` (`iw` wide, `ic` channels) from (y0, x0, c0).
extern "C" __global__ void crop(const h16* x, h16* y, long n, int iw, int ic, int y0, int x0, int c0, int ow, int oc) {
    INDEX
    int ch = i % oc;
    long p = i / oc;
    int X = p % ow, Y = p / ow;
    y[i] = x[((long)(Y + y0) * iw + X + x0) * ic + c0 + ch];
}

extern "C" __global__ void to_half(const float* x, h16* y, long n) { INDEX y[i] = f2h(x[i]); }
extern "C" __global__ void to_float(const h16* x, float* y, long n) { INDEX y[i] = h2f(x[i]); }
"#;

/// A fused activation, as the kernel's `mode` and parameters.
#[derive(Clone, Copy)]
struct Act {
    mode: i32,
    slope: f32,
}

impl Conv {
    /// `spec` on the device, its weights as cuDNN wants them for NHWC: `[out][kh][kw][in]` for
    /// a convolution, `[in][kh][kw][out]` for a transposed one (backward-data's filter).
    fn upload(
        stream: &Arc<CudaStream>,
        spec: &ConvSpec,
        transposed: bool,
    ) -> Result<Conv, CudaPlanError> {
        let c = spec;
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
        let (act, slopes) = activation(&c.act);
        Ok(Conv {
            in_c: c.in_c,
            out_c: c.out_c,
            k: (kh, kw),
            stride: (c.stride_h, c.stride_w),
            dil: (c.dil_h, c.dil_w),
            pad: (c.pad.top, c.pad.left),
            weights: stream.memcpy_stod(&w).map_err(cuda_err)?,
            bias: stream.memcpy_stod(&bias).map_err(cuda_err)?,
            act,
            slopes: stream.memcpy_stod(&slopes).map_err(cuda_err)?,
        })
    }
}

struct Dense {
    inputs: usize,
    outputs: usize,
    weights: CudaSlice<f32>,
    bias: CudaSlice<f32>,
    mode: i32,
    slope: f32,
}

struct Conv {
    in_c: usize,
    out_c: usize,
    k: (usize, usize),
    stride: (usize, usize),
    dil: (usize, usize),
    pad: (usize, usize),
    /// `[out][kh][kw][in]` (KRSC, for NHWC).
    weights: CudaSlice<f16>,
    bias: CudaSlice<f32>,
    act: Act,
    slopes: CudaSlice<f32>,
}

enum Step {
    Conv(Box<Conv>),
    PixelShuffle(usize),
    Resample {
        mode: InterpMode,
        scale: (f32, f32),
        size: (usize, usize),
        align_corner: bool,
    },
    /// `ca * a + cb * b`.
    Sum(f32, f32),
    /// Channel concatenation of every input.
    Concat,
    /// Transposed convolution (cuDNN backward-data), bias and activation fused after.
    Deconv(Box<Conv>),
    /// Global average pooling to one value per channel.
    Mean,
    /// A fully connected layer on a per-channel vector.
    Dense(Box<Dense>),
    /// The first input's channels scaled by the second, a per-channel vector.
    ScaleChannels,
    Crop(CropSpec),
    /// Split: the outputs share the input's buffer.
    Alias,
}

struct Node {
    step: Step,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
}

/// A blob on the device: fp16, channels last.
#[derive(Clone)]
struct Blob {
    data: Arc<CudaSlice<f16>>,
    h: usize,
    w: usize,
    c: usize,
}

struct Kernels {
    bias_act: CudaFunction,
    pixel_shuffle: CudaFunction,
    resample: CudaFunction,
    axpby: CudaFunction,
    copy_channels: CudaFunction,
    channel_mean: CudaFunction,
    dense: CudaFunction,
    scale_channels: CudaFunction,
    crop: CudaFunction,
    to_half: CudaFunction,
    to_float: CudaFunction,
}

/// cuDNN's handle, used only while holding `CudaPlan::running`.
struct DnnHandle(Arc<Cudnn>);

// SAFETY: a cuDNN handle may move between threads as long as no two use it at once, which
// `CudaPlan::running` guarantees (every use is inside `execute`, under that lock).
unsafe impl Send for DnnHandle {}
unsafe impl Sync for DnnHandle {}

/// A convolution ready to launch on one input size.
struct ConvSetup {
    x: TensorDescriptor<f16>,
    y: TensorDescriptor<f16>,
    w: FilterDescriptor<f16>,
    conv: ConvDescriptor<f32>,
    algo: dnn::cudnnConvolutionFwdAlgo_t,
    workspace: usize,
    out: (usize, usize),
}

struct Setups(HashMap<(usize, usize, usize), ConvSetup>);

/// A resize's sampling positions and weights on the device, for one input size.
struct DeviceTaps {
    iy: CudaSlice<i32>,
    wy: CudaSlice<f32>,
    ix: CudaSlice<i32>,
    wx: CudaSlice<f32>,
    taps: i32,
    out: (usize, usize),
}

// SAFETY: the descriptors are plain cuDNN handles, used only under `CudaPlan::running` (as
// the cuDNN handle they belong to).
unsafe impl Send for Setups {}
unsafe impl Sync for Setups {}

pub struct CudaPlan {
    name: String,
    stream: Arc<CudaStream>,
    cudnn: DnnHandle,
    kernels: Kernels,
    nodes: Vec<Node>,
    input: usize,
    output: usize,
    blob_count: usize,
    /// Each blob's last reader, so its memory goes back as soon as possible.
    last_use: Vec<usize>,
    /// Per (conv index, height, width): descriptors, algorithm, workspace size.
    setups: Mutex<Setups>,
    /// Per (resize index, height, width): its taps, uploaded once.
    taps: Mutex<HashMap<(usize, usize, usize), Arc<DeviceTaps>>>,
    workspace: Mutex<Option<CudaSlice<u8>>>,
    /// One frame at a time per plan (one stream).
    running: Mutex<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum CudaPlanError {
    #[error("the CUDA executor does not run {0} yet")]
    Unsupported(String),
    #[error("CUDA: {0}")]
    Cuda(String),
}

fn cuda_err(e: impl std::fmt::Debug) -> CudaPlanError {
    CudaPlanError::Cuda(format!("{e:?}"))
}

impl CudaPlan {
    /// Prepares `graph` on CUDA device `index`: weights uploaded, kernels compiled.
    pub fn new(graph: &Graph, index: usize) -> Result<CudaPlan, CudaPlanError> {
        // cudarc panics when a library lacks a symbol it expects (another CUDA major version,
        // say): that is a device that cannot be used, not a crash.
        std::panic::catch_unwind(|| Self::prepare(graph, index)).unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a CUDA library failed to load".into());
            Err(CudaPlanError::Cuda(why))
        })
    }

    fn prepare(graph: &Graph, index: usize) -> Result<CudaPlan, CudaPlanError> {
        let missing = unsupported_layers(graph);
        if !missing.is_empty() {
            return Err(CudaPlanError::Unsupported(missing.join(", ")));
        }
        let ctx = CudaContext::new(index).map_err(cuda_err)?;
        let name = format!("cuda:{index} ({})", ctx.name().map_err(cuda_err)?);
        // One stream does all the work, so cudarc's cross-stream event tracking (an event
        // recorded per buffer per launch) is pure overhead.
        // SAFETY: no buffer of this context is used on another stream.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(cuda_err)?;
        let cudnn = DnnHandle(Cudnn::new(stream.clone()).map_err(cuda_err)?);
        let ptx = cudarc::nvrtc::compile_ptx(KERNELS).map_err(cuda_err)?;
        let module = ctx.load_module(ptx).map_err(cuda_err)?;
        let f = |n: &str| module.load_function(n).map_err(cuda_err);
        let kernels = Kernels {
            bias_act: f("bias_act")?,
            pixel_shuffle: f("pixel_shuffle")?,
            resample: f("resample")?,
            axpby: f("axpby")?,
            copy_channels: f("copy_channels")?,
            channel_mean: f("channel_mean")?,
            dense: f("dense")?,
            scale_channels: f("scale_channels")?,
            crop: f("crop")?,
            to_half: f("to_half")?,
            to_float: f("to_float")?,
        };
        let mut nodes: Vec<Node> = Vec::new();
        let mut consumers = vec![0usize; graph.blob_names.len()];
        for n in &graph.nodes {
            for &i in &n.inputs {
                consumers[i] += 1;
            }
        }
        for n in &graph.nodes {
            let step = match &n.op {
                Op::Input => continue,
                Op::Split => Step::Alias,
                Op::Convolution(c) => Step::Conv(Box::new(Conv::upload(&stream, c, false)?)),
                Op::Activation(a) => {
                    // Fold into the convolution that produced its input, when it is the only reader.
                    let input = n.inputs[0];
                    if let Some(prev) = nodes.last_mut() {
                        if let Step::Conv(conv) = &mut prev.step {
                            if prev.outputs == [input]
                                && consumers[input] == 1
                                && conv.act.mode == 0
                            {
                                let (act, slopes) = activation(a);
                                conv.act = act;
                                conv.slopes = stream.memcpy_stod(&slopes).map_err(cuda_err)?;
                                prev.outputs = n.outputs.clone();
                                continue;
                            }
                        }
                    }
                    return Err(CudaPlanError::Unsupported(format!(
                        "{} (an activation not after a convolution)",
                        n.name
                    )));
                }
                Op::PixelShuffle {
                    factor,
                    channel_major: false,
                } => Step::PixelShuffle(*factor),
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
                Op::BinaryOp {
                    kind: BinaryKind::Add,
                    scalar: None,
                } => Step::Sum(1.0, 1.0),
                Op::Eltwise {
                    kind: EltwiseKind::Sum,
                    coeffs,
                } if n.inputs.len() == 2 => Step::Sum(
                    coeffs.first().copied().unwrap_or(1.0),
                    coeffs.get(1).copied().unwrap_or(1.0),
                ),
                Op::Concat { axis: 0 | -3 } => Step::Concat,
                Op::Deconvolution(c) => Step::Deconv(Box::new(Conv::upload(&stream, c, true)?)),
                Op::GlobalPool { max: false } => Step::Mean,
                Op::InnerProduct {
                    out,
                    weights,
                    bias,
                    act,
                } => {
                    let (mode, slope) = match act {
                        Activation::Relu { slope } => (1, *slope),
                        Activation::Sigmoid => (4, 0.0),
                        _ => (0, 0.0),
                    };
                    let bias = if bias.is_empty() {
                        vec![0.0; *out]
                    } else {
                        bias.clone()
                    };
                    Step::Dense(Box::new(Dense {
                        inputs: weights.len() / out,
                        outputs: *out,
                        weights: stream.memcpy_stod(weights).map_err(cuda_err)?,
                        bias: stream.memcpy_stod(&bias).map_err(cuda_err)?,
                        mode,
                        slope,
                    }))
                }
                Op::BinaryOp {
                    kind: BinaryKind::Mul,
                    scalar: None,
                } => Step::ScaleChannels,
                Op::Crop(spec) => Step::Crop(spec.clone()),
                _ => return Err(CudaPlanError::Unsupported(n.kind.clone())),
            };
            nodes.push(Node {
                step,
                inputs: n.inputs.clone(),
                outputs: n.outputs.clone(),
            });
        }
        let mut last_use = vec![usize::MAX; graph.blob_names.len()];
        for (i, n) in nodes.iter().enumerate() {
            for &b in &n.inputs {
                last_use[b] = i;
            }
        }
        Ok(CudaPlan {
            name,
            stream,
            cudnn,
            kernels,
            nodes,
            input: graph.input,
            output: graph.output,
            blob_count: graph.blob_names.len(),
            last_use,
            setups: Mutex::new(Setups(HashMap::new())),
            taps: Mutex::new(HashMap::new()),
            workspace: Mutex::new(None),
            running: Mutex::new(()),
        })
    }

    fn launch_cfg(n: usize) -> LaunchConfig {
        LaunchConfig::for_num_elems(n as u32)
    }

    fn alloc(&self, n: usize) -> Result<CudaSlice<f16>, CudaPlanError> {
        // SAFETY: every element is written by the kernel or cuDNN call that follows.
        unsafe { self.stream.alloc::<f16>(n) }.map_err(cuda_err)
    }

    /// cuDNN's descriptors for `conv` from an `input` to an `output` size: the two tensors, the
    /// filter (for backward-data when `transposed`) and the convolution, fp16 with fp32
    /// accumulation on tensor cores.
    #[allow(clippy::type_complexity)]
    fn descriptors(
        &self,
        conv: &Conv,
        input: (usize, usize),
        output: (usize, usize),
        transposed: bool,
    ) -> Result<
        (
            TensorDescriptor<f16>,
            TensorDescriptor<f16>,
            FilterDescriptor<f16>,
            ConvDescriptor<f32>,
        ),
        CudaPlanError,
    > {
        let nhwc = dnn::cudnnTensorFormat_t::CUDNN_TENSOR_NHWC;
        let i = |v: usize| v as i32;
        let dnn = &self.cudnn.0;
        let tensor = |c: usize, (h, w): (usize, usize)| {
            dnn.create_4d_tensor::<f16>(nhwc, [1, i(c), i(h), i(w)])
                .map_err(cuda_err)
        };
        let (k, c) = if transposed {
            (conv.in_c, conv.out_c)
        } else {
            (conv.out_c, conv.in_c)
        };
        let filter = dnn
            .create_4d_filter::<f16>(nhwc, [i(k), i(c), i(conv.k.0), i(conv.k.1)])
            .map_err(cuda_err)?;
        let mut cd = dnn
            .create_conv2d::<f32>(
                [i(conv.pad.0), i(conv.pad.1)],
                [i(conv.stride.0), i(conv.stride.1)],
                [i(conv.dil.0), i(conv.dil.1)],
                dnn::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
            )
            .map_err(cuda_err)?;
        cd.set_math_type(dnn::cudnnMathType_t::CUDNN_TENSOR_OP_MATH)
            .map_err(cuda_err)?;
        Ok((
            tensor(conv.in_c, input)?,
            tensor(conv.out_c, output)?,
            filter,
            cd,
        ))
    }

    /// Descriptors, algorithm and workspace size for convolution `index` on an `h x w` input,
    /// made on first use and kept: per frame, a convolution is then only its launches.
    fn setup(&self, conv: &Conv, x: &Blob) -> Result<ConvSetup, CudaPlanError> {
        let out_dim = |n: usize, k: usize, s: usize, d: usize, p: usize| {
            (n + 2 * p - d * (k - 1) - 1) / s + 1
        };
        let oh = out_dim(x.h, conv.k.0, conv.stride.0, conv.dil.0, conv.pad.0);
        let ow = out_dim(x.w, conv.k.1, conv.stride.1, conv.dil.1, conv.pad.1);
        let (xd, yd, wd, cd) = self.descriptors(conv, (x.h, x.w), (oh, ow), false)?;
        let mut y = self.alloc(oh * ow * conv.out_c)?;
        let op = ConvForward {
            conv: &cd,
            x: &xd,
            w: &wd,
            y: &yd,
        };
        let algo = self.fastest_algorithm(&op, x, &conv.weights, &mut y)?;
        let workspace = op.get_workspace_size(algo).map_err(cuda_err)?;
        Ok(ConvSetup {
            x: xd,
            y: yd,
            w: wd,
            conv: cd,
            algo,
            workspace,
            out: (oh, ow),
        })
    }

    /// The taps of resize `index` for input `x`, computed and uploaded on first use.
    fn resize_taps(
        &self,
        index: usize,
        x: &Blob,
        (mode, scale, size, align_corner): (InterpMode, (f32, f32), (usize, usize), bool),
    ) -> Result<Arc<DeviceTaps>, CudaPlanError> {
        let mut cache = self.taps.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = cache.get(&(index, x.h, x.w)) {
            return Ok(t.clone());
        }
        let (oh, ow) =
            vsr_runtime::ops::layout::interp_shape(x.h, x.w, scale.0, scale.1, size.0, size.1);
        let (iy, wy, taps) = resize_taps(mode, x.h, oh, align_corner);
        let (ix, wx, _) = resize_taps(mode, x.w, ow, align_corner);
        let up_i = |v: Vec<usize>| {
            self.stream
                .memcpy_stod(&v.iter().map(|&i| i as i32).collect::<Vec<i32>>())
                .map_err(cuda_err)
        };
        let up_w = |v: Vec<[f32; 4]>| self.stream.memcpy_stod(&v.concat()).map_err(cuda_err);
        let t = Arc::new(DeviceTaps {
            iy: up_i(iy)?,
            wy: up_w(wy)?,
            ix: up_i(ix)?,
            wx: up_w(wx)?,
            taps: taps as i32,
            out: (oh, ow),
        });
        cache.insert((index, x.h, x.w), t.clone());
        Ok(t)
    }

    /// A transposed convolution as cuDNN's backward-data, then bias and activation.
    fn deconv(&self, conv: &Conv, x: &Blob) -> Result<Blob, CudaPlanError> {
        let full = |n: usize, k: usize, s: usize, d: usize| (n - 1) * s + d * (k - 1) + 1;
        let oh = full(x.h, conv.k.0, conv.stride.0, conv.dil.0) - 2 * conv.pad.0;
        let ow = full(x.w, conv.k.1, conv.stride.1, conv.dil.1) - 2 * conv.pad.1;
        let (dy, dx, wd, cd) = self.descriptors(conv, (x.h, x.w), (oh, ow), true)?;
        let op = ConvBackwardData {
            conv: &cd,
            dx: &dx,
            w: &wd,
            dy: &dy,
        };
        let algo = op.pick_algorithm().map_err(cuda_err)?;
        let need = op.get_workspace_size(algo).map_err(cuda_err)?;
        let mut ws = self
            .stream
            .alloc_zeros::<u8>(need.max(1))
            .map_err(cuda_err)?;
        let n = oh * ow * conv.out_c;
        let mut y = self.alloc(n)?;
        // SAFETY: descriptors match the buffers' types, layouts and sizes.
        unsafe {
            op.launch(
                algo,
                Some(&mut ws).filter(|_| need > 0),
                (f16::ONE, f16::ZERO),
                &mut y,
                &conv.weights,
                x.data.as_ref(),
            )
        }
        .map_err(cuda_err)?;
        self.bias_act(y, conv, (oh, ow))
    }

    /// Bias and activation in place on a convolution's `oh x ow` output, as a blob.
    fn bias_act(
        &self,
        mut y: CudaSlice<f16>,
        conv: &Conv,
        (oh, ow): (usize, usize),
    ) -> Result<Blob, CudaPlanError> {
        let n = oh * ow * conv.out_c;
        let (cn, c, mode, slope) = (n as i64, conv.out_c as i32, conv.act.mode, conv.act.slope);
        let mut b = self.stream.launch_builder(&self.kernels.bias_act);
        b.arg(&mut y)
            .arg(&conv.bias)
            .arg(&conv.slopes)
            .arg(&cn)
            .arg(&c)
            .arg(&mode)
            .arg(&slope);
        // SAFETY: the kernel reads and writes within `n` elements and `c` channels.
        unsafe { b.launch(Self::launch_cfg(n)) }.map_err(cuda_err)?;
        Ok(Blob {
            data: Arc::new(y),
            h: oh,
            w: ow,
            c: conv.out_c,
        })
    }

    fn conv(&self, index: usize, conv: &Conv, x: &Blob) -> Result<Blob, CudaPlanError> {
        let mut setups = self.setups.lock().unwrap_or_else(|e| e.into_inner());
        let key = (index, x.h, x.w);
        let setup = match setups.0.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(self.setup(conv, x)?),
        };
        let (oh, ow) = setup.out;
        let (algo, need) = (setup.algo, setup.workspace);
        let op = ConvForward {
            conv: &setup.conv,
            x: &setup.x,
            w: &setup.w,
            y: &setup.y,
        };
        let mut y = self.alloc(oh * ow * conv.out_c)?;
        let mut ws = self.workspace.lock().unwrap_or_else(|e| e.into_inner());
        if need > 0 && ws.as_ref().is_none_or(|w| w.len() < need) {
            *ws = Some(self.stream.alloc_zeros::<u8>(need).map_err(cuda_err)?);
        }
        // SAFETY: descriptors match the buffers' types, layouts and sizes.
        unsafe {
            op.launch(
                algo,
                ws.as_mut().filter(|_| need > 0),
                (f16::ONE, f16::ZERO),
                x.data.as_ref(),
                &conv.weights,
                &mut y,
            )
        }
        .map_err(cuda_err)?;
        self.bias_act(y, conv, (oh, ow))
    }

    /// Times every cuDNN algorithm on this very convolution and keeps the fastest (what
    /// PyTorch's `cudnn.benchmark` does); cuDNN's heuristic pick is measurably slower here.
    fn fastest_algorithm(
        &self,
        op: &ConvForward<f16, f32, f16>,
        x: &Blob,
        weights: &CudaSlice<f16>,
        y: &mut CudaSlice<f16>,
    ) -> Result<dnn::cudnnConvolutionFwdAlgo_t, CudaPlanError> {
        use dnn::cudnnConvolutionFwdAlgo_t as A;
        let candidates = [
            A::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
            A::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
            A::CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
            A::CUDNN_CONVOLUTION_FWD_ALGO_DIRECT,
            A::CUDNN_CONVOLUTION_FWD_ALGO_FFT,
            A::CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING,
            A::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD,
            A::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED,
        ];
        let mut best = (f64::INFINITY, op.pick_algorithm().map_err(cuda_err)?);
        for algo in candidates {
            let Ok(need) = op.get_workspace_size(algo) else {
                continue;
            };
            if need > 1 << 30 {
                continue;
            }
            let mut ws = self
                .stream
                .alloc_zeros::<u8>(need.max(1))
                .map_err(cuda_err)?;
            let mut time = f64::INFINITY;
            for _ in 0..3 {
                self.stream.synchronize().map_err(cuda_err)?;
                let start = std::time::Instant::now();
                // SAFETY: descriptors match the buffers; the workspace is the size asked for.
                let ok = unsafe {
                    op.launch(
                        algo,
                        Some(&mut ws).filter(|_| need > 0),
                        (f16::ONE, f16::ZERO),
                        x.data.as_ref(),
                        weights,
                        y,
                    )
                };
                if ok.is_err() {
                    time = f64::INFINITY;
                    break;
                }
                self.stream.synchronize().map_err(cuda_err)?;
                time = time.min(start.elapsed().as_secs_f64());
            }
            if time < best.0 {
                best = (time, algo);
            }
        }
        Ok(best.1)
    }

    fn execute(
        &self,
        input: &Tensor,
        output: &mut dyn FnMut(usize, usize, usize) -> Tensor,
    ) -> Result<Tensor, CudaPlanError> {
        let _one = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let x = self.upload(input)?;
        let out = self.forward(x)?;
        let mut host = output(out.h, out.w, out.c);
        self.download(&out, &mut host.data)?;
        Ok(host)
    }

    /// Seconds per frame of the network alone, the frame already on the device and the result
    /// left there (as PyTorch is usually timed): the median of `runs` after `warmup`.
    pub fn time_on_device(
        &self,
        input: &Tensor,
        warmup: usize,
        runs: usize,
    ) -> Result<f64, CudaPlanError> {
        let _one = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let x = self.upload(input)?;
        let mut times = Vec::new();
        for i in 0..warmup + runs.max(1) {
            self.stream.synchronize().map_err(cuda_err)?;
            let start = std::time::Instant::now();
            let out = self.forward(x.clone())?;
            self.stream.synchronize().map_err(cuda_err)?;
            if i >= warmup {
                times.push(start.elapsed().as_secs_f64());
            }
            drop(out);
        }
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    }

    /// The frame on the device, as fp16.
    fn upload(&self, input: &Tensor) -> Result<Blob, CudaPlanError> {
        let n_in = input.data.len();
        let host = self.stream.memcpy_stod(&input.data).map_err(cuda_err)?;
        let mut x = self.alloc(n_in)?;
        let ni = n_in as i64;
        let mut b = self.stream.launch_builder(&self.kernels.to_half);
        b.arg(&host).arg(&mut x).arg(&ni);
        // SAFETY: both buffers hold `n_in` elements.
        unsafe { b.launch(Self::launch_cfg(n_in)) }.map_err(cuda_err)?;
        Ok(Blob {
            data: Arc::new(x),
            h: input.h,
            w: input.w,
            c: input.c,
        })
    }

    fn download(&self, out: &Blob, host: &mut [f32]) -> Result<(), CudaPlanError> {
        let n = out.h * out.w * out.c;
        // SAFETY: written in full by the kernel below.
        let mut f = unsafe { self.stream.alloc::<f32>(n) }.map_err(cuda_err)?;
        let nn = n as i64;
        let mut b = self.stream.launch_builder(&self.kernels.to_float);
        b.arg(out.data.as_ref()).arg(&mut f).arg(&nn);
        // SAFETY: both buffers hold `n` elements.
        unsafe { b.launch(Self::launch_cfg(n)) }.map_err(cuda_err)?;
        self.stream.memcpy_dtoh(&f, host).map_err(cuda_err)?;
        self.stream.synchronize().map_err(cuda_err)
    }

    /// The network on a frame already on the device (caller holds `running`).
    fn forward(&self, x: Blob) -> Result<Blob, CudaPlanError> {
        let mut blobs: Vec<Option<Blob>> = vec![None; self.blob_count];
        blobs[self.input] = Some(x);
        for (index, node) in self.nodes.iter().enumerate() {
            let get = |i: usize| {
                blobs[node.inputs[i]]
                    .clone()
                    .ok_or_else(|| CudaPlanError::Cuda("blob used before it exists".into()))
            };
            let a = get(0)?;
            let out = match &node.step {
                Step::Alias => {
                    for &o in &node.outputs {
                        blobs[o] = Some(a.clone());
                    }
                    continue;
                }
                Step::Conv(conv) => self.conv(index, conv, &a)?,
                Step::PixelShuffle(r) => {
                    let (oh, ow, oc) = (a.h * r, a.w * r, a.c / (r * r));
                    let n = oh * ow * oc;
                    let mut y = self.alloc(n)?;
                    let (nn, w, c, r) = (n as i64, a.w as i32, oc as i32, *r as i32);
                    let mut b = self.stream.launch_builder(&self.kernels.pixel_shuffle);
                    b.arg(a.data.as_ref())
                        .arg(&mut y)
                        .arg(&nn)
                        .arg(&w)
                        .arg(&c)
                        .arg(&r);
                    // SAFETY: indices stay within both buffers.
                    unsafe { b.launch(Self::launch_cfg(n)) }.map_err(cuda_err)?;
                    Blob {
                        data: Arc::new(y),
                        h: oh,
                        w: ow,
                        c: oc,
                    }
                }
                Step::Resample {
                    mode,
                    scale,
                    size,
                    align_corner,
                } => {
                    let t = self.resize_taps(index, &a, (*mode, *scale, *size, *align_corner))?;
                    let (oh, ow) = t.out;
                    let n = oh * ow * a.c;
                    let mut y = self.alloc(n)?;
                    let (nn, ih, iw, oww, c, taps) = (
                        n as i64, a.h as i32, a.w as i32, ow as i32, a.c as i32, t.taps,
                    );
                    let mut b = self.stream.launch_builder(&self.kernels.resample);
                    b.arg(a.data.as_ref())
                        .arg(&mut y)
                        .arg(&nn)
                        .arg(&ih)
                        .arg(&iw)
                        .arg(&oww)
                        .arg(&c)
                        .arg(&taps);
                    b.arg(&t.iy).arg(&t.wy).arg(&t.ix).arg(&t.wx);
                    // SAFETY: tap indices are clamped to the source; weights cover every output.
                    unsafe { b.launch(Self::launch_cfg(n)) }.map_err(cuda_err)?;
                    Blob {
                        data: Arc::new(y),
                        h: oh,
                        w: ow,
                        c: a.c,
                    }
                }
                Step::Deconv(conv) => self.deconv(conv, &a)?,
                Step::Mean => {
                    let mut y = self.alloc(a.c)?;
                    let (hw, c) = ((a.h * a.w) as i64, a.c as i32);
                    let cfg = LaunchConfig {
                        grid_dim: (a.c as u32, 1, 1),
                        block_dim: (256, 1, 1),
                        shared_mem_bytes: 0,
                    };
                    let mut b = self.stream.launch_builder(&self.kernels.channel_mean);
                    b.arg(a.data.as_ref()).arg(&mut y).arg(&hw).arg(&c);
                    // SAFETY: one block per channel, each reading its channel of `a`.
                    unsafe { b.launch(cfg) }.map_err(cuda_err)?;
                    Blob {
                        data: Arc::new(y),
                        h: 1,
                        w: 1,
                        c: a.c,
                    }
                }
                Step::Dense(d) => {
                    if a.h * a.w * a.c != d.inputs {
                        return Err(CudaPlanError::Unsupported(
                            "a fully connected layer on a frame".into(),
                        ));
                    }
                    let mut y = self.alloc(d.outputs)?;
                    let (inp, out) = (d.inputs as i32, d.outputs as i32);
                    let cfg = LaunchConfig {
                        grid_dim: (d.outputs.div_ceil(128) as u32, 1, 1),
                        block_dim: (128, 1, 1),
                        shared_mem_bytes: 0,
                    };
                    let mut b = self.stream.launch_builder(&self.kernels.dense);
                    b.arg(a.data.as_ref())
                        .arg(&d.weights)
                        .arg(&d.bias)
                        .arg(&mut y)
                        .arg(&inp)
                        .arg(&out)
                        .arg(&d.mode)
                        .arg(&d.slope);
                    // SAFETY: `weights` is outputs x inputs; each thread writes one output.
                    unsafe { b.launch(cfg) }.map_err(cuda_err)?;
                    Blob {
                        data: Arc::new(y),
                        h: 1,
                        w: 1,
                        c: d.outputs,
                    }
                }
                Step::ScaleChannels => {
                    let s = get(1)?;
                    if s.h * s.w != 1 || s.c != a.c {
                        return Err(CudaPlanError::Unsupported(
                            "a multiplication other than per channel".into(),
                        ));
                    }
                    let n = a.h * a.w * a.c;
                    let mut y = self.alloc(n)?;
                    let (nn, c) = (n as i64, a.c as i32);
                    let mut b = self.stream.launch_builder(&self.kernels.scale_channels);
                    b.arg(a.data.as_ref())
                        .arg(s.data.as_ref())
                        .arg(&mut y)
                        .arg(&nn)
                        .arg(&c);
                    // SAFETY: `s` has one entry per channel of `a`.
                    unsafe { b.launch(Self::launch_cfg(n)) }.map_err(cuda_err)?;
                    Blob {
                        data: Arc::new(y),
                        ..a
                    }
                }
                Step::Crop(spec) => {
                    let shape = |b: &Blob| vsr_runtime::Shape::image(b.h, b.w, b.c);
                    let reference = if node.inputs.len() > 1 {
                        Some(shape(&get(1)?))
                    } else {
                        None
                    };
                    let r = vsr_runtime::ops::layout::crop_region(spec, shape(&a), reference)
                        .ok_or_else(|| CudaPlanError::Cuda("a crop outside its input".into()))?;
                    let n = r.h * r.w * r.ch;
                    let mut y = self.alloc(n)?;
                    let (nn, iw, ic) = (n as i64, a.w as i32, a.c as i32);
                    let (y0, x0, c0, ow, oc) =
                        (r.y as i32, r.x as i32, r.c as i32, r.w as i32, r.ch as i32);
                    let mut b = self.stream.launch_builder(&self.kernels.crop);
                    b.arg(a.data.as_ref())
                        .arg(&mut y)
                        .arg(&nn)
                        .arg(&iw)
                        .arg(&ic)
                        .arg(&y0)
                        .arg(&x0)
                        .arg(&c0)
                        .arg(&ow)
                        .arg(&oc);
                    // SAFETY: the region lies inside `a` (checked by crop_region).
                    unsafe { b.launch(Self::launch_cfg(n)) }.map_err(cuda_err)?;
                    Blob {
                        data: Arc::new(y),
                        h: r.h,
                        w: r.w,
                        c: r.ch,
                    }
                }
                Step::Concat => {
                    let parts: Vec<Blob> =
                        (0..node.inputs.len()).map(get).collect::<Result<_, _>>()?;
                    if parts.iter().any(|p| (p.h, p.w) != (a.h, a.w)) {
                        return Err(CudaPlanError::Unsupported(
                            "a concatenation of different sizes".into(),
                        ));
                    }
                    let ctot: usize = parts.iter().map(|p| p.c).sum();
                    let mut y = self.alloc(a.h * a.w * ctot)?;
                    let mut offset = 0;
                    for p in &parts {
                        let n = p.h * p.w * p.c;
                        let (nn, cx, ct, off) = (n as i64, p.c as i32, ctot as i32, offset as i32);
                        let mut b = self.stream.launch_builder(&self.kernels.copy_channels);
                        b.arg(p.data.as_ref())
                            .arg(&mut y)
                            .arg(&nn)
                            .arg(&cx)
                            .arg(&ct)
                            .arg(&off);
                        // SAFETY: each input's channels land inside the output's `ctot`.
                        unsafe { b.launch(Self::launch_cfg(n)) }.map_err(cuda_err)?;
                        offset += p.c;
                    }
                    Blob {
                        data: Arc::new(y),
                        c: ctot,
                        ..a
                    }
                }
                Step::Sum(ca, cb) => {
                    let bb = get(1)?;
                    if (a.h, a.w, a.c) != (bb.h, bb.w, bb.c) {
                        return Err(CudaPlanError::Unsupported(
                            "an addition of different shapes".into(),
                        ));
                    }
                    let n = a.h * a.w * a.c;
                    let mut y = self.alloc(n)?;
                    let nn = n as i64;
                    let mut b = self.stream.launch_builder(&self.kernels.axpby);
                    b.arg(a.data.as_ref())
                        .arg(bb.data.as_ref())
                        .arg(&mut y)
                        .arg(&nn)
                        .arg(ca)
                        .arg(cb);
                    // SAFETY: all three buffers hold `n` elements.
                    unsafe { b.launch(Self::launch_cfg(n)) }.map_err(cuda_err)?;
                    Blob {
                        data: Arc::new(y),
                        ..a
                    }
                }
            };
            for &i in &node.inputs {
                if self.last_use[i] == index && i != self.output {
                    blobs[i] = None;
                }
            }
            blobs[node.outputs[0]] = Some(out);
        }
        blobs[self.output]
            .take()
            .ok_or_else(|| CudaPlanError::Cuda("no output".into()))
    }
}

impl Executor for CudaPlan {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn run(
        &self,
        input: &Tensor,
        output: &mut dyn FnMut(usize, usize, usize) -> Tensor,
    ) -> Result<Tensor, RunError> {
        self.execute(input, output).map_err(|e| RunError::Device {
            device: self.name.clone(),
            reason: e.to_string(),
        })
    }
}

/// Sampling positions and weights for one axis: ncnn's nearest rule (one tap), or the CPU
/// executor's own bilinear/bicubic taps.
fn resize_taps(
    mode: InterpMode,
    src: usize,
    dst: usize,
    align_corner: bool,
) -> (Vec<usize>, Vec<[f32; 4]>, usize) {
    if mode == InterpMode::Nearest {
        let step = src as f32 / dst as f32;
        let index = (0..dst)
            .map(|d| ((d as f32 * step) as usize).min(src - 1))
            .collect();
        return (index, vec![[1.0, 0.0, 0.0, 0.0]; dst], 1);
    }
    vsr_runtime::ops::layout::resize_taps(mode, src, dst, align_corner)
}

fn activation(a: &Activation) -> (Act, Vec<f32>) {
    match a {
        Activation::Identity => (
            Act {
                mode: 0,
                slope: 0.0,
            },
            vec![0.0],
        ),
        Activation::Relu { slope } => (
            Act {
                mode: 1,
                slope: *slope,
            },
            vec![0.0],
        ),
        Activation::PRelu(s) if s.len() == 1 => (
            Act {
                mode: 3,
                slope: 0.0,
            },
            s.clone(),
        ),
        Activation::PRelu(s) => (
            Act {
                mode: 2,
                slope: 0.0,
            },
            s.clone(),
        ),
        // Not reached: `unsupported_layers` refuses the others.
        _ => (
            Act {
                mode: 0,
                slope: 0.0,
            },
            vec![0.0],
        ),
    }
}

/// The layers this executor cannot run yet, by type, without duplicates.
pub fn unsupported_layers(graph: &Graph) -> Vec<String> {
    let mut missing: Vec<String> = Vec::new();
    for n in &graph.nodes {
        let ok = match &n.op {
            Op::Input | Op::Split => true,
            Op::Convolution(c) | Op::Deconvolution(c) => {
                c.pad.top == c.pad.bottom
                    && c.pad.left == c.pad.right
                    && c.out_pad_right == 0
                    && c.out_pad_bottom == 0
                    && matches!(
                        c.act,
                        Activation::Identity | Activation::Relu { .. } | Activation::PRelu(_)
                    )
            }
            Op::GlobalPool { max } => !max,
            Op::InnerProduct { act, .. } => {
                matches!(
                    act,
                    Activation::Identity | Activation::Relu { .. } | Activation::Sigmoid
                )
            }
            Op::Crop(_) => true,
            Op::Activation(a) => matches!(a, Activation::Relu { .. } | Activation::PRelu(_)),
            Op::PixelShuffle { channel_major, .. } => !channel_major,
            Op::Interp { .. } => true,
            Op::BinaryOp { kind, scalar } => {
                matches!(kind, BinaryKind::Add | BinaryKind::Mul) && scalar.is_none()
            }
            Op::Eltwise { kind, .. } => *kind == EltwiseKind::Sum && n.inputs.len() == 2,
            Op::Concat { axis } => matches!(axis, 0 | -3),
            _ => false,
        };
        if !ok && !missing.contains(&n.kind) {
            missing.push(n.kind.clone());
        }
    }
    missing
}
