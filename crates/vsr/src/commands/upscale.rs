//! `vsr upscale INPUT -o OUTPUT`: a video through a model, every other stream kept.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{RunArgs, SettingsArgs};
use vsr_media::config::Config;
use vsr_media::video::encode::{Codec, EncodeSettings};
use vsr_media::video::pipeline::{self, Job, Progress};
use vsr_media::video::Limits;

#[derive(Debug, Args)]
pub struct UpscaleArgs {
    /// Input video
    pub input: PathBuf,
    /// Output video (.mp4, .mkv, .mov, .webm)
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub model: SettingsArgs,
    /// Output video codec
    #[arg(long, value_enum, default_value_t = Codec::H264)]
    pub codec: Codec,
    /// Constant rate factor (default: visually lossless for the codec)
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=63))]
    pub crf: Option<u32>,
    /// Only the first N frames
    #[arg(long)]
    pub frames: Option<u64>,
    /// Largest output frame, WIDTHxHEIGHT
    #[arg(long, default_value = "7680x4320", value_parser = parse_size)]
    pub max_output: (u64, u64),
    /// Print progress as one JSON object per line on stdout
    #[arg(long)]
    pub json_progress: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

fn parse_size(s: &str) -> Result<(u64, u64), String> {
    let (w, h) = s.split_once('x').ok_or("expected WIDTHxHEIGHT")?;
    Ok((
        w.parse().map_err(|_| "bad width")?,
        h.parse().map_err(|_| "bad height")?,
    ))
}

pub fn run(config: &Config, args: &UpscaleArgs) -> anyhow::Result<()> {
    let enhancer = args.model.load(config, &args.run)?;
    let job = Job {
        input: &args.input,
        output: &args.output,
        enhancer: &enhancer,
        encode: EncodeSettings {
            codec: args.codec,
            crf: args.crf.unwrap_or(args.codec.default_crf()),
            shortest: args.frames.is_some(),
        },
        limits: Limits::default(),
        max_output: args.max_output,
        max_frames: args.frames,
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    // Ctrl-C or SIGTERM: stop within a frame, kill FFmpeg, remove the partial output.
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))?;
    // A bar on a terminal (indicatif draws nothing elsewhere); JSON lines when asked.
    let bar = if args.json_progress {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0).with_style(
            ProgressStyle::with_template("[{bar:30}] {pos}/{len} frames {msg}")
                .expect("the template is valid")
                .progress_chars("#."),
        )
    };
    let mut report = |p: &Progress| {
        if args.json_progress {
            println!("{}", serde_json::to_string(p).unwrap_or_default());
        }
        bar.set_length(p.total_frames);
        bar.set_position(p.current_frame);
        bar.set_message(format!("{:.2} fps ETA {:.0}s", p.fps, p.eta_seconds));
    };
    let result = pipeline::run(&job, &mut report, &cancel);
    bar.finish();
    let summary = result.map_err(|e| anyhow::anyhow!("{e} [{}]", e.code()))?;
    eprintln!(
        "{}: {} frames {}x{} -> {}x{} with {} on {} in {:.1}s ({:.2} fps)",
        args.output.display(),
        summary.frames,
        summary.input.video.width,
        summary.input.video.height,
        summary.output_size.0,
        summary.output_size.1,
        enhancer.model_names(),
        enhancer.devices(),
        summary.seconds,
        summary.frames as f64 / summary.seconds.max(1e-9)
    );
    Ok(())
}
