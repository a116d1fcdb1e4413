//! The CUDA executor: runs the steps `lower` made from a graph, one frame at a time on one
//! stream. Convolutions go through cuDNN in fp16 NHWC on tensor cores (the fastest algorithm
//! measured per layer and size), each followed by one kernel for bias and activation; the
//! other steps are `kernels.cu`'s. Blobs are freed after their last reader, and an allocation
//! that fails is reported as out of memory, so the upscaler can retry with smaller tiles.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::cudnn::{
    sys as dnn, ConvBackwardData, ConvDescriptor, ConvForward, Cudnn, CudnnError, FilterDescriptor,
    TensorDescriptor,
};
use cudarc::driver::{
    sys::CUresult, CudaContext, CudaFunction, CudaSlice, CudaStream, DriverError, LaunchArgs,
    LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::CompileError;
use half::f16;
use vsr_runtime::graph::{Graph, InterpMode};
use vsr_runtime::ops::elementwise::broadcast_shape;
use vsr_runtime::ops::layout::{crop_region, resize_taps};
use vsr_runtime::{Executor, RunError, Tensor};

use crate::kernels::Kernels;
use crate::lower::{lower, Blob, Conv, Lowered, Node, Operand, Step};

/// cuDNN's handle, used only while holding `CudaPlan::running`.
struct DnnHandle(Arc<Cudnn>);

// SAFETY: a cuDNN handle may move between threads as long as no two use it at once, which
// `CudaPlan::running` guarantees (every use is inside `execute`, under that lock).
unsafe impl Send for DnnHandle {}
unsafe impl Sync for DnnHandle {}

/// A convolution layer's cuDNN descriptors for one input size: `x` its input, `y` its output.
struct Descriptors {
    x: TensorDescriptor<f16>,
    y: TensorDescriptor<f16>,
    w: FilterDescriptor<f16>,
    conv: ConvDescriptor<f32>,
}

/// A cuDNN algorithm: forward for a convolution, backward-data for a transposed one.
#[derive(Clone, Copy)]
enum Algo {
    Forward(dnn::cudnnConvolutionFwdAlgo_t),
    BackwardData(dnn::cudnnConvolutionBwdDataAlgo_t),
}

impl Algo {
    /// Every algorithm of the direction, for timing.
    fn candidates(transposed: bool) -> Vec<Algo> {
        use dnn::cudnnConvolutionBwdDataAlgo_t as B;
        use dnn::cudnnConvolutionFwdAlgo_t as F;
        if transposed {
            [
                B::CUDNN_CONVOLUTION_BWD_DATA_ALGO_0,
                B::CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
                B::CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT,
                B::CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING,
                B::CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD,
                B::CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED,
            ]
            .map(Algo::BackwardData)
            .to_vec()
        } else {
            [
                F::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
                F::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
                F::CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
                F::CUDNN_CONVOLUTION_FWD_ALGO_DIRECT,
                F::CUDNN_CONVOLUTION_FWD_ALGO_FFT,
                F::CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING,
                F::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD,
                F::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED,
            ]
            .map(Algo::Forward)
            .to_vec()
        }
    }
}

impl Descriptors {
    fn forward(&self) -> ConvForward<'_, f16, f32, f16> {
        ConvForward {
            conv: &self.conv,
            x: &self.x,
            w: &self.w,
            y: &self.y,
        }
    }

    /// Backward-data computes the layer's output as the gradient of its input.
    fn backward_data(&self) -> ConvBackwardData<'_, f16, f32, f16> {
        ConvBackwardData {
            conv: &self.conv,
            dx: &self.y,
            w: &self.w,
            dy: &self.x,
        }
    }

    /// cuDNN's own pick, the fallback when no algorithm could be timed.
    fn heuristic(&self, transposed: bool) -> Result<Algo, CudnnError> {
        Ok(if transposed {
            Algo::BackwardData(self.backward_data().pick_algorithm()?)
        } else {
            Algo::Forward(self.forward().pick_algorithm()?)
        })
    }

    fn workspace_size(&self, algo: Algo) -> Result<usize, CudnnError> {
        match algo {
            Algo::Forward(a) => self.forward().get_workspace_size(a),
            Algo::BackwardData(a) => self.backward_data().get_workspace_size(a),
        }
    }

    /// `y = conv(x)` (or its transpose) with `algo`.
    ///
    /// # Safety
    /// The buffers must have the descriptors' types, layouts and sizes, and `workspace` at
    /// least `workspace_size(algo)` bytes.
    unsafe fn launch(
        &self,
        algo: Algo,
        workspace: Option<&mut CudaSlice<u8>>,
        x: &CudaSlice<f16>,
        w: &CudaSlice<f16>,
        y: &mut CudaSlice<f16>,
    ) -> Result<(), CudnnError> {
        let (one, zero) = (f16::ONE, f16::ZERO);
        match algo {
            Algo::Forward(a) => self.forward().launch(a, workspace, (one, zero), x, w, y),
            Algo::BackwardData(a) => {
                self.backward_data()
                    .launch(a, workspace, (one, zero), y, w, x)
            }
        }
    }
}

/// A convolution layer ready to launch on one input size.
struct ConvSetup {
    d: Descriptors,
    algo: Algo,
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

/// The largest cuDNN workspace a convolution algorithm may ask for.
const MAX_WORKSPACE: usize = 1 << 30;

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
    /// An allocation failed: the caller may retry with a smaller tile.
    #[error("out of GPU memory ({0})")]
    OutOfMemory(String),
    #[error("CUDA: {0}")]
    Cuda(String),
}

impl From<DriverError> for CudaPlanError {
    fn from(e: DriverError) -> Self {
        match e.0 {
            CUresult::CUDA_ERROR_OUT_OF_MEMORY => CudaPlanError::OutOfMemory(format!("{e:?}")),
            _ => CudaPlanError::Cuda(format!("{e:?}")),
        }
    }
}

impl From<CudnnError> for CudaPlanError {
    fn from(e: CudnnError) -> Self {
        use dnn::cudnnStatus_t as S;
        match e.0 {
            S::CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED
            | S::CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED => {
                CudaPlanError::OutOfMemory(format!("cuDNN {e:?}"))
            }
            _ => CudaPlanError::Cuda(format!("cuDNN {e:?}")),
        }
    }
}

impl From<CompileError> for CudaPlanError {
    fn from(e: CompileError) -> Self {
        CudaPlanError::Cuda(format!("compiling the kernels: {e:?}"))
    }
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
        let ctx = CudaContext::new(index)?;
        let name = format!("cuda:{index} ({})", ctx.name()?);
        // One stream does all the work, so cudarc's cross-stream event tracking (an event
        // recorded per buffer per launch) is pure overhead.
        // SAFETY: no buffer of this context is used on another stream.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream()?;
        let Lowered {
            nodes,
            blob_count,
            last_use,
        } = lower(graph, &stream)?;
        let cudnn = DnnHandle(Cudnn::new(stream.clone())?);
        let kernels = Kernels::load(&ctx)?;
        Ok(CudaPlan {
            name,
            stream,
            cudnn,
            kernels,
            nodes,
            input: graph.input,
            output: graph.output,
            blob_count,
            last_use,
            setups: Mutex::new(Setups(HashMap::new())),
            taps: Mutex::new(HashMap::new()),
            workspace: Mutex::new(None),
            running: Mutex::new(()),
        })
    }

    fn alloc(&self, n: usize) -> Result<CudaSlice<f16>, CudaPlanError> {
        // SAFETY: every element is written by the kernel or cuDNN call that follows.
        unsafe { self.stream.alloc::<f16>(n) }.map_err(CudaPlanError::from)
    }

    /// cuDNN's descriptors for `conv` from an `input` to an `output` size, fp16 with fp32
    /// accumulation on tensor cores. For a transposed convolution (backward-data), `x` and `y`
    /// are still the layer's input and output, and the filter is declared the other way round.
    fn descriptors(
        &self,
        conv: &Conv,
        input: (usize, usize),
        output: (usize, usize),
        transposed: bool,
    ) -> Result<Descriptors, CudaPlanError> {
        let nhwc = dnn::cudnnTensorFormat_t::CUDNN_TENSOR_NHWC;
        let i = |v: usize| v as i32;
        let dnn = &self.cudnn.0;
        let tensor = |c: usize, (h, w): (usize, usize)| {
            dnn.create_4d_tensor::<f16>(nhwc, [1, i(c), i(h), i(w)])
                .map_err(CudaPlanError::from)
        };
        let (k, c) = if transposed {
            (conv.in_c, conv.out_c)
        } else {
            (conv.out_c, conv.in_c)
        };
        let filter = dnn.create_4d_filter::<f16>(nhwc, [i(k), i(c), i(conv.k.0), i(conv.k.1)])?;
        let mut cd = dnn.create_conv2d::<f32>(
            [i(conv.pad.0), i(conv.pad.1)],
            [i(conv.stride.0), i(conv.stride.1)],
            [i(conv.dil.0), i(conv.dil.1)],
            dnn::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
        )?;
        cd.set_math_type(dnn::cudnnMathType_t::CUDNN_TENSOR_OP_MATH)?;
        Ok(Descriptors {
            x: tensor(conv.in_c, input)?,
            y: tensor(conv.out_c, output)?,
            w: filter,
            conv: cd,
        })
    }

    /// Descriptors, algorithm and workspace size for convolution layer `conv` on input `x`
    /// (transposed: backward-data), made on first use and kept: per frame, a convolution is
    /// then only its launches.
    fn setup(&self, conv: &Conv, x: &Blob, transposed: bool) -> Result<ConvSetup, CudaPlanError> {
        let side = |n: usize, k: usize, s: usize, d: usize, p: usize| {
            if transposed {
                (n - 1) * s + d * (k - 1) + 1 - 2 * p
            } else {
                (n + 2 * p - d * (k - 1) - 1) / s + 1
            }
        };
        let oh = side(x.h, conv.k.0, conv.stride.0, conv.dil.0, conv.pad.0);
        let ow = side(x.w, conv.k.1, conv.stride.1, conv.dil.1, conv.pad.1);
        let d = self.descriptors(conv, (x.h, x.w), (oh, ow), transposed)?;
        let mut y = self.alloc(oh * ow * conv.out_c)?;
        let algo = self.fastest_algorithm(&d, transposed, x, &conv.weights, &mut y)?;
        let workspace = d.workspace_size(algo)?;
        Ok(ConvSetup {
            d,
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
        let (ty, tx, taps) = resize_taps(mode, (x.h, x.w), (oh, ow), align_corner);
        let up_i = |v: Vec<usize>| {
            self.stream
                .memcpy_stod(&v.iter().map(|&i| i as i32).collect::<Vec<i32>>())
                .map_err(CudaPlanError::from)
        };
        let up_w = |v: Vec<[f32; 4]>| {
            self.stream
                .memcpy_stod(&v.concat())
                .map_err(CudaPlanError::from)
        };
        let t = Arc::new(DeviceTaps {
            iy: up_i(ty.index)?,
            wy: up_w(ty.weights)?,
            ix: up_i(tx.index)?,
            wx: up_w(tx.weights)?,
            taps: taps as i32,
            out: (oh, ow),
        });
        cache.insert((index, x.h, x.w), t.clone());
        Ok(t)
    }

    /// Bias and activation in place on a convolution's `oh x ow` output, as a blob.
    fn bias_act(
        &self,
        mut y: CudaSlice<f16>,
        conv: &Conv,
        (oh, ow): (usize, usize),
    ) -> Result<Blob, CudaPlanError> {
        let n = oh * ow * conv.out_c;
        let (cn, c, act) = (n as i64, conv.out_c as i32, &conv.act);
        let mut b = self.stream.launch_builder(&self.kernels.bias_act);
        b.arg(&mut y)
            .arg(&conv.bias)
            .arg(&act.slopes)
            .arg(&cn)
            .arg(&c)
            .arg(&act.mode)
            .arg(&act.p0)
            .arg(&act.p1);
        // SAFETY: the kernel reads and writes within `n` elements and `c` channels.
        unsafe { b.launch(Kernels::per_element(n)) }?;
        Ok(Blob {
            data: Arc::new(y),
            h: oh,
            w: ow,
            c: conv.out_c,
        })
    }

    /// A convolution layer (transposed: through cuDNN's backward-data), then its bias and
    /// activation.
    fn conv(
        &self,
        index: usize,
        conv: &Conv,
        x: &Blob,
        transposed: bool,
    ) -> Result<Blob, CudaPlanError> {
        let mut setups = self.setups.lock().unwrap_or_else(|e| e.into_inner());
        let key = (index, x.h, x.w);
        let setup = match setups.0.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(self.setup(conv, x, transposed)?)
            }
        };
        let (oh, ow) = setup.out;
        let mut y = self.alloc(oh * ow * conv.out_c)?;
        let need = setup.workspace;
        let mut ws = self.workspace.lock().unwrap_or_else(|e| e.into_inner());
        if need > 0 && ws.as_ref().is_none_or(|w| w.len() < need) {
            *ws = Some(self.stream.alloc_zeros::<u8>(need)?);
        }
        // SAFETY: the descriptors were made for these buffers' types, layouts and sizes.
        unsafe {
            setup.d.launch(
                setup.algo,
                ws.as_mut().filter(|_| need > 0),
                x.data.as_ref(),
                &conv.weights,
                &mut y,
            )
        }?;
        self.bias_act(y, conv, (oh, ow))
    }

    /// Times every cuDNN algorithm on this very convolution and keeps the fastest (what
    /// PyTorch's `cudnn.benchmark` does); cuDNN's heuristic pick is measurably slower here.
    fn fastest_algorithm(
        &self,
        d: &Descriptors,
        transposed: bool,
        x: &Blob,
        weights: &CudaSlice<f16>,
        y: &mut CudaSlice<f16>,
    ) -> Result<Algo, CudaPlanError> {
        let mut best = (f64::INFINITY, d.heuristic(transposed)?);
        for algo in Algo::candidates(transposed) {
            let Ok(need) = d.workspace_size(algo) else {
                continue;
            };
            if need > MAX_WORKSPACE {
                continue;
            }
            // An algorithm whose workspace does not fit now is not a candidate.
            let Ok(mut ws) = self.stream.alloc_zeros::<u8>(need.max(1)) else {
                continue;
            };
            let mut time = f64::INFINITY;
            for _ in 0..3 {
                self.stream.synchronize()?;
                let start = std::time::Instant::now();
                // SAFETY: descriptors match the buffers; the workspace is the size asked for.
                let ok = unsafe {
                    d.launch(
                        algo,
                        Some(&mut ws).filter(|_| need > 0),
                        x.data.as_ref(),
                        weights,
                        y,
                    )
                };
                if ok.is_err() {
                    time = f64::INFINITY;
                    break;
                }
                self.stream.synchronize()?;
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
            self.stream.synchronize()?;
            let start = std::time::Instant::now();
            let out = self.forward(x.clone())?;
            self.stream.synchronize()?;
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
        let host = self.stream.memcpy_stod(&input.data)?;
        let mut x = self.alloc(n_in)?;
        let ni = n_in as i64;
        let mut b = self.stream.launch_builder(&self.kernels.to_half);
        b.arg(&host).arg(&mut x).arg(&ni);
        // SAFETY: both buffers hold `n_in` elements.
        unsafe { b.launch(Kernels::per_element(n_in)) }?;
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
        let mut f = unsafe { self.stream.alloc::<f32>(n) }?;
        let nn = n as i64;
        let mut b = self.stream.launch_builder(&self.kernels.to_float);
        b.arg(out.data.as_ref()).arg(&mut f).arg(&nn);
        // SAFETY: both buffers hold `n` elements.
        unsafe { b.launch(Kernels::per_element(n)) }?;
        self.stream.memcpy_dtoh(&f, host)?;
        self.stream.synchronize().map_err(CudaPlanError::from)
    }

    /// The network on a frame already on the device (caller holds `running`).
    fn forward(&self, x: Blob) -> Result<Blob, CudaPlanError> {
        let mut blobs: Vec<Option<Blob>> = vec![None; self.blob_count];
        blobs[self.input] = Some(x);
        for (index, node) in self.nodes.iter().enumerate() {
            let inputs: Vec<Blob> = node
                .inputs
                .iter()
                .map(|&i| {
                    blobs[i]
                        .clone()
                        .ok_or_else(|| CudaPlanError::Cuda("blob used before it exists".into()))
                })
                .collect::<Result<_, _>>()?;
            let out = match (&node.step, inputs.first()) {
                (Step::Constant(blob), _) => blob.clone(),
                (step, Some(a)) => self.step(index, step, a, &inputs[1..])?,
                (_, None) => return Err(CudaPlanError::Cuda("a step without input".into())),
            };
            for &i in &node.inputs {
                if self.last_use[i] == index && i != self.output {
                    blobs[i] = None;
                }
            }
            for &o in &node.outputs {
                blobs[o] = Some(out.clone());
            }
        }
        blobs[self.output]
            .take()
            .ok_or_else(|| CudaPlanError::Cuda("no output".into()))
    }

    /// One step on its first input `a` and the `rest`, into a new blob.
    fn step(
        &self,
        index: usize,
        step: &Step,
        a: &Blob,
        rest: &[Blob],
    ) -> Result<Blob, CudaPlanError> {
        let i = |v: usize| v as i32;
        Ok(match step {
            Step::Alias => a.clone(),
            Step::Constant(blob) => blob.clone(),
            Step::Conv(conv) => self.conv(index, conv, a, false)?,
            Step::Deconv(conv) => self.conv(index, conv, a, true)?,
            Step::Pad {
                top,
                left,
                bottom,
                right,
            } => {
                let (oh, ow) = (a.h + top + bottom, a.w + left + right);
                let rest = (i(a.h), i(a.w), i(a.c), i(*top), i(*left), i(ow));
                self.launch(&self.kernels.pad, (oh, ow, a.c), &[&a.data], rest)?
            }
            Step::Act(act) => {
                let rest = (&act.slopes, i(a.c), act.mode, act.p0, act.p1);
                self.launch(&self.kernels.act, (a.h, a.w, a.c), &[&a.data], rest)?
            }
            Step::Binary { op, operand } => {
                let b = match operand {
                    Operand::Input => rest.first(),
                    Operand::Constant(blob) => Some(blob),
                    Operand::Scalar(_) => None,
                };
                let scalar = match operand {
                    Operand::Scalar(s) => *s,
                    _ => 0.0,
                };
                let shape = |t: &Blob| vsr_runtime::Shape::image(t.h, t.w, t.c);
                let out = match b {
                    Some(b) => broadcast_shape(shape(a), shape(b)).ok_or_else(|| {
                        CudaPlanError::Cuda(format!(
                            "cannot broadcast {}x{}x{} with {}x{}x{}",
                            a.h, a.w, a.c, b.h, b.w, b.c
                        ))
                    })?,
                    None => shape(a),
                };
                let (bh, bw, bc) = b.map_or((0, 0, 0), |b| (b.h, b.w, b.c));
                let rest = (
                    i(out.w),
                    i(out.c),
                    (i(a.h), i(a.w), i(a.c)),
                    (i(bh), i(bw), i(bc)),
                    *op,
                    scalar,
                );
                // Without a second operand the kernel reads `scalar`; `a` fills the slot.
                let inputs = [&a.data, &b.unwrap_or(a).data];
                self.launch(&self.kernels.binary, (out.h, out.w, out.c), &inputs, rest)?
            }
            Step::Sum(ca, cb) => {
                let b = &rest[0];
                if (a.h, a.w, a.c) != (b.h, b.w, b.c) {
                    return Err(CudaPlanError::Unsupported(
                        "an addition of different shapes".into(),
                    ));
                }
                let inputs = [&a.data, &b.data];
                self.launch(&self.kernels.axpby, (a.h, a.w, a.c), &inputs, (*ca, *cb))?
            }
            Step::PixelShuffle(r) => {
                let (oh, ow, oc) = (a.h * r, a.w * r, a.c / (r * r));
                let rest = (i(a.w), i(oc), i(*r));
                self.launch(&self.kernels.pixel_shuffle, (oh, ow, oc), &[&a.data], rest)?
            }
            Step::Resample {
                mode,
                scale,
                size,
                align_corner,
            } => {
                let t = self.resize_taps(index, a, (*mode, *scale, *size, *align_corner))?;
                let (oh, ow) = t.out;
                let rest = (
                    (i(a.h), i(a.w), i(ow), i(a.c), t.taps),
                    (&t.iy, &t.wy, &t.ix, &t.wx),
                );
                self.launch(&self.kernels.resample, (oh, ow, a.c), &[&a.data], rest)?
            }
            Step::Crop(spec) => {
                let shape = |b: &Blob| vsr_runtime::Shape::image(b.h, b.w, b.c);
                let r = crop_region(spec, shape(a), rest.first().map(shape))
                    .ok_or_else(|| CudaPlanError::Cuda("a crop outside its input".into()))?;
                let rest = (i(a.w), i(a.c), i(r.y), i(r.x), i(r.c), i(r.w), i(r.ch));
                self.launch(&self.kernels.crop, (r.h, r.w, r.ch), &[&a.data], rest)?
            }
            Step::Concat => {
                let parts: Vec<&Blob> = std::iter::once(a).chain(rest).collect();
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
                    let (nn, cx, ct, off) = (n as i64, i(p.c), i(ctot), i(offset));
                    let mut b = self.stream.launch_builder(&self.kernels.copy_channels);
                    b.arg(p.data.as_ref())
                        .arg(&mut y)
                        .arg(&nn)
                        .arg(&cx)
                        .arg(&ct)
                        .arg(&off);
                    // SAFETY: each input's channels land inside the output's `ctot`.
                    unsafe { b.launch(Kernels::per_element(n)) }?;
                    offset += p.c;
                }
                Blob {
                    data: Arc::new(y),
                    c: ctot,
                    ..a.clone()
                }
            }
            Step::Pool { max } => {
                let mut y = self.alloc(a.c)?;
                let (hw, c, max) = ((a.h * a.w) as i64, i(a.c), i32::from(*max));
                let cfg = LaunchConfig {
                    grid_dim: (a.c as u32, 1, 1),
                    block_dim: (256, 1, 1),
                    shared_mem_bytes: 0,
                };
                let mut b = self.stream.launch_builder(&self.kernels.channel_pool);
                b.arg(a.data.as_ref())
                    .arg(&mut y)
                    .arg(&hw)
                    .arg(&c)
                    .arg(&max);
                // SAFETY: one block of 256 threads per channel, each reading its channel of `a`.
                unsafe { b.launch(cfg) }?;
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
                let (inp, out) = (i(d.inputs), i(d.outputs));
                let cfg = LaunchConfig {
                    grid_dim: (d.outputs.div_ceil(128) as u32, 1, 1),
                    block_dim: (128, 1, 1),
                    shared_mem_bytes: 0,
                };
                let mut b = self.stream.launch_builder(&self.kernels.dense);
                b.arg(a.data.as_ref())
                    .arg(&d.weights)
                    .arg(&d.bias)
                    .arg(&d.act.slopes)
                    .arg(&mut y)
                    .arg(&inp)
                    .arg(&out)
                    .arg(&d.act.mode)
                    .arg(&d.act.p0)
                    .arg(&d.act.p1);
                // SAFETY: `weights` is outputs x inputs; each thread writes one output.
                unsafe { b.launch(cfg) }?;
                Blob {
                    data: Arc::new(y),
                    h: 1,
                    w: 1,
                    c: d.outputs,
                }
            }
        })
    }

    /// Launches a one-thread-per-element kernel whose arguments are `(inputs..., y, n,
    /// rest...)` into a new `h x w x c` blob `y` of `n` elements.
    fn launch(
        &self,
        kernel: &CudaFunction,
        (h, w, c): (usize, usize, usize),
        inputs: &[&Arc<CudaSlice<f16>>],
        rest: impl KernelArgs,
    ) -> Result<Blob, CudaPlanError> {
        let n = h * w * c;
        let mut y = self.alloc(n)?;
        let nn = n as i64;
        let mut b = self.stream.launch_builder(kernel);
        for x in inputs {
            b.arg(x.as_ref());
        }
        b.arg(&mut y).arg(&nn);
        rest.push(&mut b);
        // SAFETY: every kernel launched here checks `i < n` and, per its doc in kernels.cu,
        // reads its inputs within the shapes passed.
        unsafe { b.launch(Kernels::per_element(n)) }?;
        Ok(Blob {
            data: Arc::new(y),
            h,
            w,
            c,
        })
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
        self.execute(input, output).map_err(|e| match e {
            CudaPlanError::OutOfMemory(reason) => RunError::DeviceOutOfMemory {
                device: self.name.clone(),
                reason,
            },
            e => RunError::Device {
                device: self.name.clone(),
                reason: e.to_string(),
            },
        })
    }

    /// The device's free memory, as CPU-plan bytes: activations are fp16 here (half of what
    /// the CPU plan counts), less room for the convolution workspace and the frame's f32
    /// copies, and a quarter kept back for the allocator's slack and other processes.
    fn tile_budget(&self) -> Option<usize> {
        self.stream.context().bind_to_thread().ok()?;
        let (free, _total) = cudarc::driver::result::mem_get_info().ok()?;
        let usable = free.saturating_sub(MAX_WORKSPACE + (256 << 20)) / 4 * 3;
        Some(usable * 2)
    }
}

/// A kernel's arguments after its output and length, pushed in order (tuples nest).
trait KernelArgs {
    fn push<'a>(&'a self, b: &mut LaunchArgs<'a>);
}

impl KernelArgs for i32 {
    fn push<'a>(&'a self, b: &mut LaunchArgs<'a>) {
        b.arg(self);
    }
}

impl KernelArgs for f32 {
    fn push<'a>(&'a self, b: &mut LaunchArgs<'a>) {
        b.arg(self);
    }
}

impl<T> KernelArgs for &CudaSlice<T> {
    fn push<'a>(&'a self, b: &mut LaunchArgs<'a>) {
        b.arg(*self);
    }
}

macro_rules! tuple_kernel_args {
    ($($t:ident),+) => {
        impl<$($t: KernelArgs),+> KernelArgs for ($($t,)+) {
            #[allow(non_snake_case)]
            fn push<'a>(&'a self, b: &mut LaunchArgs<'a>) {
                let ($($t,)+) = self;
                $($t.push(b);)+
            }
        }
    };
}

tuple_kernel_args!(A, B);
tuple_kernel_args!(A, B, C);
tuple_kernel_args!(A, B, C, D);
tuple_kernel_args!(A, B, C, D, E);
tuple_kernel_args!(A, B, C, D, E, F);
tuple_kernel_args!(A, B, C, D, E, F, G);
