//! The execution plan: the graph with splits turned into aliases, activations fused into the
//! convolutions that feed them, weights prepared for the chosen ISA, and each value's last use
//! known so its buffer returns to a pool as soon as it dies. Peak memory is therefore a few live
//! activations, and [`Plan::peak_bytes`] can predict it for any input size without running.

use crate::error::RunError;
use crate::graph::{Activation, BinaryKind, ConvSpec, CropSpec, Graph, InterpMode, Op};
use crate::kernels::Isa;
use crate::ops::conv::Im2colConv;
use crate::ops::deconv::Deconv;
use crate::ops::dense::DenseBlock;
use crate::ops::narrow::NarrowConv;
use crate::ops::reduce::{self, InnerProduct};
use crate::ops::winograd::Winograd;
use crate::ops::{elementwise, layout};
use crate::tensor::{Shape, Tensor};

/// A layer as the executor runs it: convolutions with their weights prepared for the ISA,
/// everything else as loaded.
#[derive(Debug)]
enum Prepared {
    Winograd(Winograd),
    Im2col(Im2colConv),
    /// A convolution to a few output channels.
    Narrow(NarrowConv),
    Deconv(Deconv),
    /// A direct deconvolution plus a crop of its second input (a U-Net's skip connection):
    /// `Deconvolution`, `Crop` and `Add` in one pass.
    DeconvAddCrop(Deconv, CropSpec),
    /// A pixel shuffle plus a nearest resize of the second input to the shuffle's size (the
    /// upsampled input a compact model adds to its output): `PixelShuffle`, `Interp` and
    /// `Add` in one pass.
    ShuffleAddNearest {
        factor: usize,
        channel_major: bool,
        /// The resize's `(scale_h, scale_w)` and `(out_h, out_w)`, as `Op::Interp` holds them.
        scale: (f32, f32),
        size: (usize, usize),
    },
    /// Convolutions and the concatenations between them, run in one buffer.
    DenseBlock(DenseBlock),
    InnerProduct(InnerProduct),
    Layer(Op),
}

#[derive(Debug)]
struct Step {
    name: String,
    op: Prepared,
    inputs: Vec<usize>,
    output: usize,
    /// Multiply-adds the step costs, for [`Plan::macs`].
    work: Work,
}

/// Multiply-adds of a step in proportion to its tensors: convolutions and inner products pay
/// per output element, deconvolutions per input element (each scatters a kernel).
#[derive(Debug, Clone, Copy)]
enum Work {
    PerOutput(u64),
    PerInput(u64),
    /// Per output pixel, whatever its channels (a dense block's convolutions).
    PerPixel(u64),
    /// Data movement and element-wise arithmetic, not counted.
    Negligible,
}

/// What walking the shapes through the plan for one input size finds.
struct ShapeWalk {
    output: Shape,
    /// Peak bytes of live activations and scratch.
    peak_bytes: usize,
    /// Multiply-adds of one run.
    macs: u64,
}

/// The arithmetic and memory traffic of one step for one input size: what a roofline floor
/// is made of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepCost {
    /// Floating-point operations of the step's matrix products as this plan runs them
    /// (Winograd's 64 per-position GEMMs for 3x3 convolutions; direct products otherwise).
    pub gemm_flops: f64,
    /// Bytes of the step's inputs and output: what it streams at the least.
    pub bytes: u64,
}

/// A model ready to run.
pub struct Plan {
    steps: Vec<Step>,
    value_count: usize,
    input: usize,
    output: usize,
    constants: Vec<(usize, Tensor)>,
    /// Index of the last step reading each value (`usize::MAX` for the output).
    last_use: Vec<usize>,
    isa: Isa,
    threads: usize,
    tuning: Tuning,
    pool: rayon::ThreadPool,
    /// Activation buffers kept between runs (see [`BufferPool`]).
    buffers: std::sync::Mutex<BufferPool>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Plan({} steps, {}, {} threads)",
            self.steps.len(),
            self.isa.name(),
            self.threads
        )
    }
}

fn shape_err(name: &str, reason: impl Into<String>) -> RunError {
    RunError::Shape {
        layer: name.to_string(),
        reason: reason.into(),
    }
}

/// Knobs for measuring and tuning rather than for users; the `vsr` binary fills them from
/// `VSR_PROFILE` and `VSR_WINO_TILES`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tuning {
    /// Log every layer's time (`tracing`, target `vsr_runtime::profile`, level info).
    pub profile: bool,
    /// Winograd tiles per block instead of the L2-sized default.
    pub winograd_tiles: Option<usize>,
}

impl Plan {
    /// Prepares `graph` to run with `threads` worker threads (0 = one per core).
    pub fn new(graph: &Graph, isa: Isa, threads: usize) -> Result<Plan, RunError> {
        Self::with_tuning(graph, isa, threads, Tuning::default())
    }

    /// [`Plan::new`] with tuning knobs.
    pub fn with_tuning(
        graph: &Graph,
        isa: Isa,
        threads: usize,
        tuning: Tuning,
    ) -> Result<Plan, RunError> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("vsr-infer-{i}"))
            .build()
            .map_err(|e| RunError::Threads(e.to_string()))?;

        // Values: one per produced blob, except that splits and no-ops alias their input.
        let mut value_of = vec![usize::MAX; graph.blob_names.len()];
        let mut value_count = 0;
        let mut constants = Vec::new();
        let mut nodes = Vec::new();
        for node in &graph.nodes {
            match &node.op {
                Op::Split | Op::Identity => {
                    for &o in &node.outputs {
                        value_of[o] = value_of[node.inputs[0]];
                    }
                }
                _ => {
                    value_of[node.outputs[0]] = value_count;
                    value_count += 1;
                    match &node.op {
                        Op::Input { .. } => {}
                        Op::MemoryData(t) => constants.push((value_of[node.outputs[0]], t.clone())),
                        _ => nodes.push(node),
                    }
                }
            }
        }
        let input = value_of[graph.input];
        let output = value_of[graph.output];

        // Consumers per value, to find activations that can be fused into their producer.
        let mut consumers = vec![0usize; value_count];
        for n in &nodes {
            for &i in &n.inputs {
                consumers[value_of[i]] += 1;
            }
        }
        let mut fused_into: Vec<Option<usize>> = vec![None; nodes.len()];
        let mut absorbed = vec![false; nodes.len()];
        for (i, n) in nodes.iter().enumerate() {
            let out_c = match &n.op {
                Op::Convolution(s) | Op::Deconvolution(s) if s.act == Activation::Identity => {
                    s.out_c
                }
                _ => continue,
            };
            let v = value_of[n.outputs[0]];
            if consumers[v] != 1 || v == output {
                continue;
            }
            let Some(j) = nodes
                .iter()
                .position(|m| m.inputs.iter().any(|&b| value_of[b] == v))
            else {
                continue;
            };
            if let Op::Activation(act) = &nodes[j].op {
                let fits = !matches!(act, Activation::PRelu(s) if s.len() != 1 && s.len() != out_c);
                if fits && !absorbed[j] {
                    fused_into[i] = Some(j);
                    absorbed[j] = true;
                }
            }
        }

        let mut steps = Vec::with_capacity(nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            if absorbed[i] {
                continue;
            }
            let (act, output_blob) = match fused_into[i] {
                Some(j) => match &nodes[j].op {
                    Op::Activation(a) => (Some(a.clone()), nodes[j].outputs[0]),
                    _ => unreachable!("only activations are fused"),
                },
                None => (None, n.outputs[0]),
            };
            let with_act = |s: &ConvSpec| {
                let mut s = s.clone();
                if let Some(a) = &act {
                    s.act = a.clone();
                }
                s
            };
            let op = match &n.op {
                Op::Convolution(s) => {
                    let s = with_act(s);
                    // Every 3x3 stride-1 convolution, even with 3 input channels: its
                    // transforms still cost less than gathering 27-wide im2col rows. But not
                    // to a few output channels, where its GEMM would be mostly padding.
                    if NarrowConv::supports(&s, isa) {
                        Prepared::Narrow(NarrowConv::new(&s, isa))
                    } else if Winograd::supports(&s) {
                        Prepared::Winograd(
                            Winograd::new(&s, isa).with_block_tiles(tuning.winograd_tiles),
                        )
                    } else {
                        Prepared::Im2col(Im2colConv::new(&s, isa))
                    }
                }
                Op::Deconvolution(s) => Prepared::Deconv(Deconv::new(&with_act(s), isa)),
                Op::InnerProduct {
                    weights, bias, act, ..
                } => Prepared::InnerProduct(InnerProduct::new(weights, bias, act, isa)),
                other => Prepared::Layer(other.clone()),
            };
            let work = match &n.op {
                Op::Convolution(s) => Work::PerOutput((s.in_c * s.kh * s.kw) as u64),
                Op::Deconvolution(s) => Work::PerInput((s.out_c * s.kh * s.kw) as u64),
                Op::InnerProduct { out, weights, .. } => {
                    Work::PerOutput((weights.len() / (*out).max(1)) as u64)
                }
                _ => Work::Negligible,
            };
            steps.push(Step {
                name: n.name.clone(),
                op,
                inputs: n.inputs.iter().map(|&b| value_of[b]).collect(),
                output: value_of[output_blob],
                work,
            });
        }

        let steps = fuse_dense_blocks(steps, output, value_count, isa);
        let steps = fuse_additions(steps, output, value_count);
        let mut last_use = vec![0usize; value_count];
        for (i, s) in steps.iter().enumerate() {
            for &v in &s.inputs {
                last_use[v] = i;
            }
        }
        last_use[output] = usize::MAX;
        for (v, _) in &constants {
            last_use[*v] = usize::MAX;
        }
        Ok(Plan {
            steps,
            value_count,
            input,
            output,
            constants,
            last_use,
            isa,
            threads,
            tuning,
            pool,
            buffers: Default::default(),
        })
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Number of fused, executable steps (for diagnostics).
    pub fn step_count(&self) -> usize {
        self.steps.len()
    }

    /// Output shape for an input of `h x w x c`, or the first layer that cannot take it.
    pub fn output_shape(&self, input: Shape) -> Result<Shape, RunError> {
        Ok(self.walk_shapes(input, |_| {})?.output)
    }

    /// Peak bytes of live activations and scratch for an input of `shape`.
    pub fn peak_bytes(&self, input: Shape) -> Result<usize, RunError> {
        Ok(self.walk_shapes(input, |_| {})?.peak_bytes)
    }

    /// Multiply-adds of one run on an input of `shape` (convolutions, deconvolutions and
    /// inner products; element-wise work is left out, as FLOP counts usually do).
    pub fn macs(&self, input: Shape) -> Result<u64, RunError> {
        Ok(self.walk_shapes(input, |_| {})?.macs)
    }

    /// What each step computes and streams for an input of `shape`, in order.
    pub fn costs(&self, input: Shape) -> Result<Vec<StepCost>, RunError> {
        let mut costs = Vec::with_capacity(self.steps.len());
        self.walk_shapes(input, |c| costs.push(c))?;
        Ok(costs)
    }

    /// Walks every step's shapes for `input`, telling `on_step` what each costs (a no-op for
    /// the shape checks every run makes).
    fn walk_shapes(
        &self,
        input: Shape,
        mut on_step: impl FnMut(StepCost),
    ) -> Result<ShapeWalk, RunError> {
        let mut shapes: Vec<Option<Shape>> = vec![None; self.value_count];
        shapes[self.input] = Some(input);
        let mut live = input.len() * 4;
        for (v, t) in &self.constants {
            shapes[*v] = Some(t.shape());
        }
        let mut peak = live;
        let mut macs = 0u64;
        for (i, step) in self.steps.iter().enumerate() {
            let ins: Vec<Shape> = step
                .inputs
                .iter()
                .map(|&v| shapes[v].expect("inputs precede use"))
                .collect();
            let out = self.out_shape(step, &ins)?;
            let scratch = match &step.op {
                Prepared::Deconv(d) => d.scratch_bytes(ins[0].h, ins[0].w),
                Prepared::Layer(Op::Interp { .. }) => ins[0].h * out.w * out.c * 4,
                _ => 0,
            };
            let step_macs = match step.work {
                Work::PerOutput(m) => m * out.len() as u64,
                Work::PerInput(m) => m * ins[0].len() as u64,
                Work::PerPixel(m) => m * (out.h * out.w) as u64,
                Work::Negligible => 0,
            };
            macs += step_macs;
            let gemm_flops = match &step.op {
                // One GEMM per transform position over every 6x6 output tile.
                Prepared::Winograd(w) => winograd_flops(w, out.h, out.w),
                Prepared::DenseBlock(b) => b
                    .convs()
                    .iter()
                    .map(|w| winograd_flops(w, out.h, out.w))
                    .sum(),
                _ => 2.0 * step_macs as f64,
            };
            let bytes = match &step.op {
                // The input copied in, then each convolution's prefix read and window written.
                Prepared::DenseBlock(b) => {
                    let per_pixel: usize = 2 * b.in_channels()
                        + b.convs()
                            .iter()
                            .map(|w| w.in_channels() + w.out_channels())
                            .sum::<usize>();
                    4 * (out.h * out.w * per_pixel) as u64
                }
                _ => 4 * (ins.iter().map(Shape::len).sum::<usize>() + out.len()) as u64,
            };
            on_step(StepCost { gemm_flops, bytes });
            live += out.len() * 4;
            peak = peak.max(live + scratch);
            shapes[step.output] = Some(out);
            for &v in &step.inputs {
                if self.last_use[v] == i {
                    live -= shapes[v].map_or(0, |s| s.len() * 4);
                    shapes[v] = None;
                }
            }
        }
        Ok(ShapeWalk {
            output: shapes[self.output].expect("output is produced"),
            peak_bytes: peak,
            macs,
        })
    }

    fn out_shape(&self, step: &Step, ins: &[Shape]) -> Result<Shape, RunError> {
        let a = ins[0];
        let err = |r: String| shape_err(&step.name, r);
        let image = |s: Option<(usize, usize)>, c: usize| {
            s.map(|(h, w)| Shape::image(h, w, c))
                .ok_or_else(|| err(format!("input {}x{} is too small", a.w, a.h)))
        };
        if let Some(c) = op_in_c(&step.op) {
            if a.c != c {
                return Err(err(format!("expects {c} input channels, got {}", a.c)));
            }
        }
        match &step.op {
            Prepared::Winograd(op) => image(op.out_shape(a.h, a.w), op_out_c(&step.op)),
            Prepared::Im2col(op) => image(op.geometry().out_shape(a.h, a.w), op_out_c(&step.op)),
            Prepared::Narrow(op) => image(op.geometry().out_shape(a.h, a.w), op_out_c(&step.op)),
            Prepared::Deconv(op) => image(op.out_shape(a.h, a.w), op_out_c(&step.op)),
            Prepared::DeconvAddCrop(op, crop) => {
                let out = image(op.out_shape(a.h, a.w), op.out_channels())?;
                let r = layout::crop_region(crop, ins[1], None);
                match r {
                    Some(r) if (r.h, r.w, r.ch) == (out.h, out.w, out.c) => Ok(out),
                    _ => Err(err(format!(
                        "skip connection from {}x{}x{} does not match {}x{}x{}",
                        ins[1].w, ins[1].h, ins[1].c, out.w, out.h, out.c
                    ))),
                }
            }
            Prepared::DenseBlock(_) if a.dims != 3 => Err(err("expects an image".into())),
            Prepared::DenseBlock(b) => {
                // Padding 1 all round (checked when planned) keeps sizes; 3x3 needs 1 pixel.
                image(b.convs()[0].out_shape(a.h, a.w), b.out_channels())
            }
            Prepared::InnerProduct(ip) => {
                if ip.inputs() != a.len() {
                    return Err(err(format!(
                        "expects {} inputs, got {}",
                        ip.inputs(),
                        a.len()
                    )));
                }
                Ok(Shape {
                    h: 1,
                    w: 1,
                    c: ip.outputs(),
                    dims: 1,
                })
            }
            Prepared::Layer(Op::Activation(Activation::PRelu(s)))
                if s.len() != 1 && s.len() != a.c =>
            {
                Err(err(format!("{} slopes for {} channels", s.len(), a.c)))
            }
            Prepared::Layer(Op::Activation(_))
            | Prepared::Layer(Op::BinaryOp {
                scalar: Some(_), ..
            }) => Ok(a),
            Prepared::Layer(Op::BinaryOp { .. }) => elementwise::broadcast_shape(a, ins[1])
                .ok_or_else(|| err(format!("cannot broadcast {a:?} with {:?}", ins[1]))),
            Prepared::Layer(Op::Eltwise { .. }) => {
                if ins.iter().any(|s| *s != a) {
                    return Err(err("eltwise inputs differ in shape".into()));
                }
                Ok(a)
            }
            Prepared::Layer(Op::Concat { axis }) => layout::concat_axis(*axis, a.dims)
                .and_then(|ax| layout::concat_shape(ins, ax))
                .ok_or_else(|| err("concat inputs do not line up".into())),
            Prepared::Layer(Op::Crop(spec)) => {
                let r = layout::crop_region(spec, a, ins.get(1).copied())
                    .ok_or_else(|| err(format!("crop does not fit in {}x{}x{}", a.w, a.h, a.c)))?;
                Ok(Shape {
                    h: r.h,
                    w: r.w,
                    c: r.ch,
                    dims: a.dims,
                })
            }
            Prepared::Layer(Op::GlobalPool { .. }) => Ok(Shape {
                h: 1,
                w: 1,
                c: a.c,
                dims: 1,
            }),
            Prepared::Layer(Op::Scale { scale, .. }) => {
                let n = scale
                    .as_ref()
                    .map_or(ins.get(1).map_or(0, |s| s.len()), |s| s.len());
                if n != a.c {
                    return Err(err(format!("{n} scales for {} channels", a.c)));
                }
                Ok(a)
            }
            Prepared::Layer(Op::PixelShuffle { factor, .. }) => {
                shuffle_shape(a, *factor).map_err(err)
            }
            Prepared::ShuffleAddNearest {
                factor,
                scale,
                size,
                ..
            } => {
                let out = shuffle_shape(a, *factor).map_err(err)?;
                let skip = ins[1];
                let (h, w) = layout::interp_shape(skip.h, skip.w, scale.0, scale.1, size.0, size.1);
                if skip.dims == 3 && (h, w, skip.c) == (out.h, out.w, out.c) {
                    Ok(out)
                } else {
                    Err(err(format!(
                        "input {}x{}x{} resized to {w}x{h} does not match {}x{}x{}",
                        skip.w, skip.h, skip.c, out.w, out.h, out.c
                    )))
                }
            }
            Prepared::Layer(Op::Interp {
                scale_h,
                scale_w,
                out_h,
                out_w,
                ..
            }) => {
                let (h, w) = layout::interp_shape(a.h, a.w, *scale_h, *scale_w, *out_h, *out_w);
                if h == 0 || w == 0 || h > 1 << 16 || w > 1 << 16 {
                    return Err(err(format!("resize to {w}x{h} is out of range")));
                }
                Ok(Shape::image(h, w, a.c))
            }
            Prepared::Layer(other) => Err(err(format!("{other:?} cannot be a step"))),
        }
    }

    /// Runs `f` on this plan's worker threads: parallel work done next to the model (the
    /// temporal stabiliser) shares its threads instead of competing with them as a second
    /// pool's would (one pool's idle workers spin a while as the other's start).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }

    /// Runs the model on a channels-last input.
    pub fn run(&self, input: Tensor) -> Result<Tensor, RunError> {
        // Check every shape first, so a bad input fails before any work is done.
        self.output_shape(input.shape())?;
        self.pool.install(|| self.execute(input))
    }

    fn execute(&self, input: Tensor) -> Result<Tensor, RunError> {
        let mut values: Vec<Option<Tensor>> = vec![None; self.value_count];
        values[self.input] = Some(input);
        // Take the kept buffers; concurrent runs of one plan simply get fewer of them.
        let mut pool = std::mem::take(&mut *self.buffers.lock().unwrap_or_else(|e| e.into_inner()));
        // Constants are copied (in-place ops may consume them) into pooled buffers, so that
        // giving the copies back does not grow the pool run after run.
        for (v, t) in &self.constants {
            let mut data = pool.take(t.data.len());
            data.copy_from_slice(&t.data);
            values[*v] = Some(Tensor::with_shape(t.shape(), data));
        }
        let profile = self.tuning.profile;
        for (i, step) in self.steps.iter().enumerate() {
            let started = std::time::Instant::now();
            let ins: Vec<Shape> = step
                .inputs
                .iter()
                .map(|&v| values[v].as_ref().expect("produced").shape())
                .collect();
            let shape = self.out_shape(step, &ins)?;
            // In-place ops take over their first input when this step is its last reader.
            let in_place = match step.op {
                Prepared::Layer(Op::Activation(_))
                | Prepared::Layer(Op::BinaryOp {
                    scalar: Some(_), ..
                })
                | Prepared::Layer(Op::Scale { .. })
                | Prepared::Layer(Op::Eltwise { .. }) => true,
                Prepared::Layer(Op::BinaryOp { .. }) => {
                    elementwise::can_run_in_place(ins[0], ins[1])
                }
                _ => false,
            };
            let sole_reader = step.inputs.iter().filter(|&&v| v == step.inputs[0]).count() == 1;
            let out = if in_place && sole_reader && self.last_use[step.inputs[0]] == i {
                let t = values[step.inputs[0]].take().expect("produced");
                let refs: Vec<&Tensor> = step.inputs[1..]
                    .iter()
                    .map(|&v| values[v].as_ref().expect("produced"))
                    .collect();
                self.exec_in_place(step, t, &refs)
            } else {
                let refs: Vec<&Tensor> = step
                    .inputs
                    .iter()
                    .map(|&v| values[v].as_ref().expect("produced"))
                    .collect();
                let mut out = Tensor::with_shape(shape, pool.take(shape.len()));
                if in_place {
                    out.data.copy_from_slice(&refs[0].data);
                    self.exec_in_place(step, out, &refs[1..])
                } else {
                    self.exec(step, &refs, &mut out, &mut pool);
                    out
                }
            };
            for &v in &step.inputs {
                if self.last_use[v] == i {
                    if let Some(t) = values[v].take() {
                        pool.give(t.data);
                    }
                }
            }
            if profile {
                tracing::info!(
                    target: "vsr_runtime::profile",
                    "{:>8.2} ms  {:<40} {}",
                    started.elapsed().as_secs_f64() * 1e3,
                    step.name,
                    out.shape_str()
                );
            }
            values[step.output] = Some(out);
        }
        let out = values[self.output].take().expect("output is produced");
        for t in values.into_iter().flatten() {
            pool.give(t.data);
        }
        // Buffers recycled while this run held the pool join it.
        let mut kept = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        for (buf, _) in std::mem::take(&mut kept.free) {
            pool.give(buf);
        }
        *kept = pool;
        Ok(out)
    }

    /// A tensor from the pool, contents unspecified: for callers that write all of it, so
    /// their buffers cycle through the pool instead of growing it.
    pub fn take_tensor(&self, h: usize, w: usize, c: usize) -> Tensor {
        let data = self
            .buffers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(h * w * c);
        Tensor::from_vec(h, w, c, data)
    }

    /// Gives a tensor's memory back for the next run or `take_tensor` (typically a frame
    /// already encoded), so steady-state runs allocate nothing.
    pub fn recycle(&self, t: Tensor) {
        self.buffers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .give(t.data);
    }

    /// Ops whose output is their first input, modified; `rest` are the other inputs.
    fn exec_in_place(&self, step: &Step, mut t: Tensor, rest: &[&Tensor]) -> Tensor {
        match &step.op {
            Prepared::Layer(Op::Activation(a)) => elementwise::activation(self.isa, &mut t, a),
            Prepared::Layer(Op::BinaryOp {
                kind,
                scalar: Some(s),
            }) => elementwise::binary_scalar(self.isa, *kind, &mut t, *s),
            Prepared::Layer(Op::BinaryOp { kind, scalar: None }) => {
                elementwise::binary_in_place(self.isa, *kind, &mut t, rest[0], self.threads)
            }
            Prepared::Layer(Op::Scale { scale, bias }) => {
                let s = scale.as_deref().unwrap_or_else(|| &rest[0].data);
                elementwise::scale(self.isa, &mut t, s, bias.as_deref());
            }
            Prepared::Layer(Op::Eltwise { kind, coeffs }) => {
                elementwise::eltwise(self.isa, *kind, coeffs, &mut t, rest)
            }
            _ => unreachable!("not an in-place op"),
        }
        t
    }

    fn exec(&self, step: &Step, ins: &[&Tensor], out: &mut Tensor, pool: &mut BufferPool) {
        let threads = self.threads;
        match &step.op {
            Prepared::Winograd(op) => op.run(ins[0], out, threads),
            Prepared::Im2col(op) => op.run(ins[0], out, threads),
            Prepared::Narrow(op) => op.run(ins[0], out, threads),
            Prepared::Deconv(op) => {
                let mut taps = pool.take(op.scratch_bytes(ins[0].h, ins[0].w) / 4);
                op.run_with(ins[0], out, &mut taps, threads);
                pool.give(taps);
            }
            Prepared::DeconvAddCrop(op, crop) => {
                let r = layout::crop_region(crop, ins[1].shape(), None).expect("checked");
                op.run_adding(ins[0], out, ins[1], r, threads)
            }
            Prepared::ShuffleAddNearest {
                factor,
                channel_major,
                ..
            } => {
                let shuffled = (ins[0], *factor, *channel_major);
                layout::pixel_shuffle_add_nearest(shuffled, ins[1], out, threads)
            }
            Prepared::DenseBlock(b) => b.run(ins[0], out, threads),
            Prepared::InnerProduct(ip) => *out = ip.run(ins[0]),
            Prepared::Layer(Op::BinaryOp { kind, .. }) => {
                elementwise::binary(self.isa, *kind, ins[0], ins[1], out)
            }
            Prepared::Layer(Op::Concat { axis }) => {
                let ax = layout::concat_axis(*axis, ins[0].dims).expect("checked by out_shape");
                layout::concat(ins, ax, out, self.isa, threads)
            }
            Prepared::Layer(Op::Crop(spec)) => {
                let r = layout::crop_region(spec, ins[0].shape(), ins.get(1).map(|t| t.shape()))
                    .expect("checked");
                layout::crop(ins[0], r, out)
            }
            Prepared::Layer(Op::GlobalPool { max }) => *out = reduce::global_pool(ins[0], *max),
            Prepared::Layer(Op::PixelShuffle {
                factor,
                channel_major,
            }) => layout::pixel_shuffle(ins[0], *factor, *channel_major, out, threads),
            Prepared::Layer(Op::Interp {
                mode, align_corner, ..
            }) => {
                if out.h == ins[0].h && out.w == ins[0].w {
                    out.data.copy_from_slice(&ins[0].data);
                } else {
                    layout::interp(ins[0], *mode, *align_corner, out, threads)
                }
            }
            _ => unreachable!("in-place ops run through exec_in_place; other layers are not steps"),
        }
    }
}

/// One GEMM per transform position over every 6x6 output tile.
fn winograd_flops(w: &Winograd, out_h: usize, out_w: usize) -> f64 {
    let tiles = out_h.div_ceil(6) * out_w.div_ceil(6);
    2.0 * 64.0 * (tiles * w.in_channels() * w.out_channels()) as f64
}

/// Finds dense blocks among the steps (see [`DenseBlock`]: a convolution of `x`, the
/// concatenation `[x, y_1]`, a convolution of that, `[x, y_1, y_2]`, ...) and replaces each with
/// one step at its last concatenation. A block is taken only when nothing outside it reads
/// its convolutions' outputs or its inner concatenations, so no value anyone needs disappears.
fn fuse_dense_blocks(steps: Vec<Step>, output: usize, value_count: usize, isa: Isa) -> Vec<Step> {
    let mut readers = vec![Vec::new(); value_count];
    for (i, s) in steps.iter().enumerate() {
        for &v in &s.inputs {
            readers[v].push(i);
        }
    }
    let channel_concat = |s: &Step| matches!(s.op, Prepared::Layer(Op::Concat { axis: 0 }));
    let winograd = |i: usize| match &steps[i].op {
        Prepared::Winograd(w) => Some(w),
        _ => None,
    };
    // (convolutions, concatenations) of each block, as step indices.
    let mut blocks: Vec<(Vec<usize>, Vec<usize>)> = Vec::new();
    let mut taken = vec![false; steps.len()];
    for first in 0..steps.len() {
        if taken[first] || winograd(first).is_none() {
            continue;
        }
        let mut values = vec![steps[first].inputs[0], steps[first].output];
        let (mut convs, mut concats) = (vec![first], Vec::new());
        while let Some(&c) = readers[values[values.len() - 1]]
            .iter()
            .find(|&&r| channel_concat(&steps[r]) && steps[r].inputs == values)
        {
            concats.push(c);
            let cat = steps[c].output;
            match readers[cat].as_slice() {
                &[r] if winograd(r).is_some() && cat != output && !taken[r] => {
                    convs.push(r);
                    values.push(steps[r].output);
                }
                _ => break,
            }
        }
        // A convolution after the last concatenation (the block's own output layer) stays.
        convs.truncate(concats.len());
        let inner = concats.len().saturating_sub(1);
        let private = convs.iter().all(|&k| {
            let v = steps[k].output;
            v != output && readers[v].iter().all(|r| concats.contains(r))
        }) && concats[..inner].iter().all(|&c| steps[c].output != output);
        let ops: Vec<&Winograd> = convs.iter().filter_map(|&k| winograd(k)).collect();
        if concats.len() >= 2 && private && DenseBlock::fits(&ops) {
            for &k in convs.iter().chain(&concats) {
                taken[k] = true;
            }
            blocks.push((convs, concats));
        }
    }
    if blocks.is_empty() {
        return steps;
    }
    let mut slots: Vec<Option<Step>> = steps.into_iter().map(Some).collect();
    let mut block_at = vec![None; slots.len()];
    for (b, (_, concats)) in blocks.iter().enumerate() {
        block_at[concats[concats.len() - 1]] = Some(b);
    }
    let mut out = Vec::with_capacity(slots.len());
    for i in 0..slots.len() {
        if let Some(b) = block_at[i] {
            let (convs, _) = &blocks[b];
            let last = slots[i].take().expect("each step is used once");
            let mut input = 0;
            let mut macs_per_pixel = 0;
            let ops: Vec<Winograd> = convs
                .iter()
                .enumerate()
                .map(|(n, &k)| {
                    let step = slots[k].take().expect("each step is used once");
                    if n == 0 {
                        input = step.inputs[0];
                    }
                    match step.op {
                        Prepared::Winograd(w) => {
                            macs_per_pixel += (w.in_channels() * 9 * w.out_channels()) as u64;
                            w
                        }
                        _ => unreachable!("checked to be a convolution"),
                    }
                })
                .collect();
            out.push(Step {
                name: last.name,
                op: Prepared::DenseBlock(DenseBlock::new(ops, isa)),
                inputs: vec![input],
                output: last.output,
                work: Work::PerPixel(macs_per_pixel),
            });
        } else if !taken[i] {
            out.push(slots[i].take().expect("each step is used once"));
        }
    }
    out
}

/// Finds additions whose two operands come from steps that nothing else reads and that
/// can add as they store, and replaces each such triple with one step at the addition (the
/// operands' tensors are never written):
/// - `Add(Crop(skip), Deconvolution(x))`, the deconvolution a direct one and the crop one of
///   `skip` alone (a U-Net's skip connection): [`Prepared::DeconvAddCrop`];
/// - `Add(PixelShuffle(x), Interp(skip))`, the resize a nearest one of one input (a compact
///   model's upsampled input): [`Prepared::ShuffleAddNearest`].
///
/// Either order of the operands.
fn fuse_additions(steps: Vec<Step>, output: usize, value_count: usize) -> Vec<Step> {
    let mut readers = vec![Vec::new(); value_count];
    let mut producer = vec![usize::MAX; value_count];
    for (i, s) in steps.iter().enumerate() {
        for &v in &s.inputs {
            readers[v].push(i);
        }
        producer[s.output] = i;
    }
    let private_to = |v: usize, add: usize| v != output && readers[v] == [add];
    // Whether steps `main` and `other`, in that role, fuse with an addition of theirs.
    let pairs = |main: &Step, other: &Step| match (&main.op, &other.op) {
        (Prepared::Deconv(op), Prepared::Layer(Op::Crop(_))) => op.is_direct(),
        (
            Prepared::Layer(Op::PixelShuffle { .. }),
            Prepared::Layer(Op::Interp {
                mode: InterpMode::Nearest,
                ..
            }),
        ) => true,
        _ => false,
    } && other.inputs.len() == 1;
    // (main, other) step indices for each addition fused.
    let mut fused: Vec<Option<(usize, usize)>> = vec![None; steps.len()];
    let mut taken = vec![false; steps.len()];
    for (add, step) in steps.iter().enumerate() {
        let is_add = matches!(
            step.op,
            Prepared::Layer(Op::BinaryOp {
                kind: BinaryKind::Add,
                scalar: None
            })
        );
        if !is_add || step.inputs.len() != 2 || step.inputs[0] == step.inputs[1] {
            continue;
        }
        for (main_v, other_v) in [(0, 1), (1, 0)].map(|(a, b)| (step.inputs[a], step.inputs[b])) {
            // A value no step produces (the input, a constant) has `usize::MAX`: no step there.
            let (m, o) = (producer[main_v], producer[other_v]);
            let pair = match (steps.get(m), steps.get(o)) {
                (Some(main), Some(other)) => pairs(main, other),
                _ => false,
            };
            if pair && private_to(main_v, add) && private_to(other_v, add) {
                fused[add] = Some((m, o));
                taken[m] = true;
                taken[o] = true;
                break;
            }
        }
    }
    let mut slots: Vec<Option<Step>> = steps.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(slots.len());
    for i in 0..slots.len() {
        if let Some((m, o)) = fused[i] {
            let add = slots[i].take().expect("each step is used once");
            let main = slots[m].take().expect("each step is used once");
            let other = slots[o].take().expect("each step is used once");
            let op = match (main.op, other.op) {
                (Prepared::Deconv(op), Prepared::Layer(Op::Crop(spec))) => {
                    Prepared::DeconvAddCrop(op, spec)
                }
                (
                    Prepared::Layer(Op::PixelShuffle {
                        factor,
                        channel_major,
                    }),
                    Prepared::Layer(Op::Interp {
                        scale_h,
                        scale_w,
                        out_h,
                        out_w,
                        ..
                    }),
                ) => Prepared::ShuffleAddNearest {
                    factor,
                    channel_major,
                    scale: (scale_h, scale_w),
                    size: (out_h, out_w),
                },
                _ => unreachable!("checked to be a pair that fuses"),
            };
            out.push(Step {
                name: main.name,
                op,
                inputs: vec![main.inputs[0], other.inputs[0]],
                output: add.output,
                work: main.work,
            });
        } else if !taken[i] {
            out.push(slots[i].take().expect("each step is used once"));
        }
    }
    out
}

/// Depth-to-space's output shape, or why there is none.
fn shuffle_shape(a: Shape, factor: usize) -> Result<Shape, String> {
    let rr = factor * factor;
    if !a.c.is_multiple_of(rr) {
        return Err(format!("{} channels do not divide by {rr}", a.c));
    }
    Ok(Shape::image(a.h * factor, a.w * factor, a.c / rr))
}

fn op_in_c(op: &Prepared) -> Option<usize> {
    match op {
        Prepared::Winograd(w) => Some(w.in_channels()),
        Prepared::Im2col(c) => Some(c.geometry().in_c),
        Prepared::Narrow(c) => Some(c.geometry().in_c),
        Prepared::Deconv(d) | Prepared::DeconvAddCrop(d, _) => Some(d.in_channels()),
        Prepared::DenseBlock(b) => Some(b.in_channels()),
        _ => None,
    }
}

fn op_out_c(op: &Prepared) -> usize {
    match op {
        Prepared::Winograd(w) => w.out_channels(),
        Prepared::Im2col(c) => c.geometry().out_c,
        Prepared::Narrow(c) => c.geometry().out_c,
        Prepared::Deconv(d) | Prepared::DeconvAddCrop(d, _) => d.out_channels(),
        Prepared::DenseBlock(b) => b.out_channels(),
        _ => 0,
    }
}

/// Reuses activation buffers across layers and runs: fresh multi-megabyte allocations are
/// mapped from the kernel and page-faulted on first touch, which costs more than many small
/// layers compute.
#[derive(Default)]
struct BufferPool {
    /// Each buffer with the length up to which its elements have been written.
    free: Vec<(Vec<f32>, usize)>,
}

impl BufferPool {
    /// A buffer of `len` elements with unspecified (but initialised) contents.
    fn take(&mut self, len: usize) -> Vec<f32> {
        let best = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, (b, _))| b.capacity() >= len)
            .min_by_key(|(_, (b, _))| b.capacity())
            .map(|(i, _)| i);
        let Some(i) = best else {
            return crate::buffers::zeroed(len);
        };
        let (mut b, initialised) = self.free.swap_remove(i);
        // SAFETY: the first `initialised` elements were written before (truncating a Vec does
        // not touch its memory), and any bit pattern is a valid f32.
        unsafe { b.set_len(initialised.min(len)) };
        // Only the part never written is zeroed: zeroing whole buffers again each run was
        // 62 MB a frame for realesr-animevideov3 and 157 MB for realcugan.
        b.resize(len, 0.0);
        b
    }

    fn give(&mut self, buf: Vec<f32>) {
        // Keep at most a few dozen buffers: the live set of one run is far smaller.
        if buf.capacity() > 0 && self.free.len() < 64 {
            let initialised = buf.len();
            self.free.push((buf, initialised));
        }
    }
}
