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
    let (model, graph, spec) = ModelRef::choose(
        args.model.as_deref(),
        args.scale,
        config,
        &Catalog::builtin(),
    )?;
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
