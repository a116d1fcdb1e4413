//! `vsr upscale-image IN.png -o OUT.png`: one image through one model.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use super::{RunArgs, SettingsArgs};
use vsr_media::config::Config;
use vsr_media::image::{read_png, write_png, Rgb8};

#[derive(Debug, Args)]
pub struct UpscaleImageArgs {
    /// Input PNG
    pub input: PathBuf,
    /// Output PNG
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub model: SettingsArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(config: &Config, args: &UpscaleImageArgs) -> anyhow::Result<()> {
    let enhancer = args.model.load(config, &args.run)?;
    let img = read_png(&args.input)?;
    let start = Instant::now();
    let out = enhancer
        .process(&img.to_tensor())
        .with_context(|| format!("upscaling with {}", enhancer.model_names()))?;
    let result = Rgb8::from_tensor(&out);
    write_png(&args.output, &result)?;
    eprintln!(
        "{}: {}x{} -> {}x{} with {} in {:.2}s",
        args.output.display(),
        img.width,
        img.height,
        result.width,
        result.height,
        enhancer.model_names(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
