//! `vsr bench`: model-only throughput, the median of several timed runs after a warm-up.
//! The last line is `median_s_per_frame=<float>` for scripts (tools/bench_ncnn.py).

use std::time::Instant;

use clap::Args;
use vsr_runtime::{Plan, Tensor};

use super::RunArgs;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::model_ref::ModelRef;

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
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(config: &Config, args: &BenchArgs) -> anyhow::Result<()> {
    let catalog = Catalog::builtin();
    let model = ModelRef::resolve(args.model.as_deref(), config, &catalog)?;
    let (graph, _) = model.load()?;
    let options = args.run.options()?;
    let plan = Plan::new(&graph, options.isa, options.threads)?;
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
    let out = plan.output_shape(input.shape())?;
    println!(
        "model={} input={w}x{h} output={}x{} isa={} threads={} peak_activation_mib={}",
        model.name,
        out.w,
        out.h,
        plan.isa().name(),
        plan.threads(),
        plan.peak_bytes(input.shape())? >> 20
    );
    for _ in 0..args.warmup {
        plan.recycle(plan.run(input.clone())?);
    }
    let mut times = Vec::with_capacity(args.runs);
    for i in 0..args.runs.max(1) {
        let start = Instant::now();
        let out = plan.run(input.clone())?;
        let t = start.elapsed().as_secs_f64();
        plan.recycle(out);
        println!("run {i}: {t:.4} s");
        times.push(t);
    }
    times.sort_by(f64::total_cmp);
    println!("median_s_per_frame={:.6}", times[times.len() / 2]);
    Ok(())
}
