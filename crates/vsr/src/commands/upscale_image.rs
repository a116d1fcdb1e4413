//! `vsr upscale-image IN.png -o OUT.png`: one image through one model.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use vsr_runtime::Upscaler;

use super::RunArgs;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::image::{read_png, write_png, Rgb8};
use crate::model_ref::ModelRef;

#[derive(Debug, Args)]
pub struct UpscaleImageArgs {
    /// Input PNG
    pub input: PathBuf,
    /// Output PNG
    #[arg(short, long)]
    pub output: PathBuf,
    /// Model name from `vsr models list`, or a path to a .param file
    #[arg(long)]
    pub model: Option<String>,
    /// Upscale factor; picks realesr-animevideov3 at that scale when no model is given
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4))]
    pub scale: Option<u32>,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(config: &Config, args: &UpscaleImageArgs) -> anyhow::Result<()> {
    let catalog = Catalog::builtin();
    let model_arg = match (&args.model, args.scale) {
        (Some(m), _) => Some(m.clone()),
        (None, Some(s)) if (2..=4).contains(&s) => Some(format!("realesr-animevideov3-x{s}")),
        (None, _) => None,
    };
    let model = ModelRef::resolve(model_arg.as_deref(), config, &catalog)?;
    let (graph, spec) = model.load()?;
    if let Some(s) = args.scale {
        anyhow::ensure!(
            s as usize == spec.scale,
            "model {} upscales {}x, but --scale {s} was asked for; pick a {s}x model (`vsr models list`)",
            model.name,
            spec.scale
        );
    }
    let img = read_png(&args.input)?;
    let up = Upscaler::new(&graph, spec, args.run.options()?)?;
    let start = Instant::now();
    let out = up
        .upscale(&img.to_tensor())
        .with_context(|| format!("upscaling with {}", model.name))?;
    let result = Rgb8::from_tensor(&out);
    write_png(&args.output, &result)?;
    eprintln!(
        "{}: {}x{} -> {}x{} with {} in {:.2}s",
        args.output.display(),
        img.width,
        img.height,
        result.width,
        result.height,
        model.name,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
