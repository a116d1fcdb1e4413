//! `vsr bench`: model-only throughput, the median of several timed runs after a warm-up, and
//! on the CPU how far that is from the machine's floor for the model (`roofline`).
//! The last line is `median_s_per_frame=<float>` for scripts (tools/bench_ncnn.py).

use std::time::Instant;

use clap::Args;
use vsr_runtime::roofline::Machine;
use vsr_runtime::{Plan, Tensor};

use super::RunArgs;
use vsr_media::catalog::Catalog;
use vsr_media::config::Config;
use vsr_media::model_ref::ModelRef;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model name from `vsr models list`, or a path to a .param file
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long, default_value_t = 480)]
    pub width: usize,
    #[arg(long, default_value_t = 270)]
    pub height: usize,
    /// Timed runs (the median is reported)
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Untimed runs first
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Also upscale this video end to end and compare its fps with the model's alone
    #[arg(long)]
    pub pipeline: Option<std::path::PathBuf>,
    /// With --pipeline: only the first N frames
    #[arg(long)]
    pub frames: Option<u64>,
    /// With --pipeline: seconds of source per segment (0 = one segment)
    #[arg(long, default_value_t = vsr_media::video::segment::DEFAULT_SECONDS)]
    pub segment_seconds: f64,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(config: &Config, args: &BenchArgs) -> anyhow::Result<()> {
    if let Some(video) = &args.pipeline {
        return pipeline(config, args, video);
    }
    let model = ModelRef::resolve(args.model.as_deref(), config, Catalog::builtin())?;
    let graph = model.load()?.graph;
    let options = args.run.options()?;
    let plan = Plan::with_tuning(&graph, options.isa, options.threads, options.tuning)?;
    // A deterministic, image-like input (smooth gradients), the same for every run.
    let (w, h) = (args.width, args.height);
    let data = (0..h * w * 3)
        .map(|i| {
            ((i % 3) as f32 * 0.3
                + (i / 3 % w) as f32 / w as f32 * 0.5
                + (i / 3 / w) as f32 / h as f32 * 0.2)
                % 1.0
        })
        .collect();
    let input = Tensor::from_vec(h, w, 3, data);
    if let vsr_cuda::Device::Cuda(gpu) = args.run.device()? {
        let cuda = vsr_cuda::CudaPlan::new(&graph, gpu.index)?;
        let on_device = cuda.time_on_device(&input, args.warmup.max(3), args.runs)?;
        println!(
            "device_only_s_per_frame={on_device:.6} ({:.1} fps; frame already on the GPU, result left there)",
            1.0 / on_device
        );
        // One result buffer reused across runs, as the upscaler's pool does.
        let spare = std::cell::RefCell::new(None::<Tensor>);
        let header = format!(
            "model={} input={w}x{h} device={}",
            model.name,
            vsr_runtime::Executor::name(&cuda)
        );
        println!("{header}");
        let median = time_runs(args, || {
            let out = vsr_runtime::Executor::run(&cuda, &input, &mut |h, w, c| {
                let reuse = spare.borrow_mut().take();
                reuse
                    .filter(|t| (t.h, t.w, t.c) == (h, w, c))
                    .unwrap_or_else(|| Tensor::zeros(h, w, c))
            })?;
            *spare.borrow_mut() = Some(out);
            Ok(())
        })?;
        print_median(median);
        return Ok(());
    }
    let out = plan.output_shape(input.shape())?;
    let header = format!(
        "model={} input={w}x{h} output={}x{} isa={} threads={} peak_activation_mib={}",
        model.name,
        out.w,
        out.h,
        plan.isa().name(),
        plan.threads(),
        plan.peak_bytes(input.shape())? >> 20
    );
    println!("{header}");
    // The machine measured before the model runs, on the same threads.
    let machine = Machine::measure(plan.isa(), plan.threads())?;
    let floor = machine.floor(&plan, input.shape())?;
    println!(
        "machine: {:.1} GFLOP/s fma peak, copy {:.0} / {:.0} / {:.1} GB/s in L2 / L3 / DRAM ({} threads)",
        machine.flops / 1e9,
        machine.l2_bandwidth / 1e9,
        machine.l3_bandwidth / 1e9,
        machine.dram_bandwidth / 1e9,
        machine.threads
    );
    println!(
        "floor_s_per_frame={:.6} ({:.1} GFLOP of GEMMs in {:.4} s + {:.2} GB streamed in {:.4} s)",
        floor.seconds,
        floor.gemm_flops / 1e9,
        floor.compute_seconds,
        floor.bytes / 1e9,
        floor.memory_seconds
    );
    let median = time_runs(args, || {
        plan.recycle(plan.run(input.clone())?);
        Ok(())
    })?;
    println!("measured_over_floor={:.3}", median / floor.seconds);
    print_median(median);
    Ok(())
}

fn print_median(median: f64) {
    println!("median_s_per_frame={median:.6}");
}

/// Warm-up, then `runs` timed runs of `run`; prints each and returns the median.
fn time_runs(
    args: &BenchArgs,
    mut run: impl FnMut() -> Result<(), vsr_runtime::RunError>,
) -> anyhow::Result<f64> {
    for _ in 0..args.warmup {
        run()?;
    }
    let mut times = Vec::with_capacity(args.runs);
    for i in 0..args.runs.max(1) {
        let start = Instant::now();
        run()?;
        let t = start.elapsed().as_secs_f64();
        println!("run {i}: {t:.4} s");
        times.push(t);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// End-to-end fps of `vsr upscale` on `video` next to the fps of the model alone on frames of
/// the same size (the model with its padding, as the pipeline runs it). The last lines are
/// `model_fps=`, `pipeline_fps=` and `pipeline_over_model=`.
fn pipeline(config: &Config, args: &BenchArgs, video: &std::path::Path) -> anyhow::Result<()> {
    use vsr_media::video::encode::{Codec, EncodeSettings};
    use vsr_media::video::pipeline::{self, Job, Segmenting};
    use vsr_media::video::{probe, Limits};

    let model = ModelRef::resolve(args.model.as_deref(), config, Catalog::builtin())?;
    let settings = vsr_media::settings::Settings {
        model: Some(model.name.clone()),
        ..Default::default()
    };
    let enhancer = super::load(&settings, config, &args.run)?;
    let info = probe(video, &Limits::default())?;
    let (w, h) = (info.video.width as usize, info.video.height as usize);
    let frame = Tensor::from_vec(
        h,
        w,
        3,
        (0..h * w * 3).map(|i| (i % 251) as f32 / 250.0).collect(),
    );
    for _ in 0..args.warmup {
        enhancer.recycle(enhancer.process(&frame)?);
    }
    let mut times = Vec::new();
    let mut time_model = || -> anyhow::Result<()> {
        for _ in 0..args.runs.max(1) {
            let start = Instant::now();
            let out = enhancer.process(&frame)?;
            times.push(start.elapsed().as_secs_f64());
            enhancer.recycle(out);
        }
        Ok(())
    };
    // Model-only runs before and after the pipeline: a shared machine's speed drifts, and
    // bracketing keeps the comparison fair.
    time_model()?;

    let dir = tempfile::tempdir()?;
    let output = dir.path().join("bench.mp4");
    let job = Job {
        input: video,
        output: &output,
        enhancer: &enhancer,
        encode: EncodeSettings {
            codec: Codec::H264,
            crf: Codec::H264.default_crf(),
            shortest: args.frames.is_some(),
        },
        limits: Limits::default(),
        max_output: (7680, 4320),
        max_frames: args.frames,
        segmenting: Segmenting {
            seconds: (args.segment_seconds > 0.0).then_some(args.segment_seconds),
            resume: false,
            input_identity: "bench".into(),
        },

        // One process: nobody else works on these segments.
        sharing: &vsr_media::video::segment::LocalLocks,
    };
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let summary = pipeline::run(&job, &mut |_| {}, &cancel)
        .map_err(|e| anyhow::anyhow!("{e} [{}]", e.code()))?;
    let pipeline_fps = summary.frames as f64 / summary.seconds;
    time_model()?;
    times.sort_by(f64::total_cmp);
    let model_fps = 1.0 / times[times.len() / 2];
    println!(
        "model={} input={w}x{h} frames={} segments={} threads={}",
        model.name,
        summary.frames,
        summary.segments,
        args.run.options()?.threads
    );
    println!("model_fps={model_fps:.4}");
    println!("pipeline_fps={pipeline_fps:.4}");
    println!("pipeline_over_model={:.3}", pipeline_fps / model_fps);
    Ok(())
}
