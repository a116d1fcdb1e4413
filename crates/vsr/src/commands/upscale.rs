//! `vsr upscale INPUT -o OUTPUT`: a video through a model, every other stream kept.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{RunArgs, SettingsArgs};
use vsr_media::config::Config;
use vsr_media::video::encode::{Codec, EncodeSettings};
use vsr_media::video::pipeline::{self, Job, Progress, Segmenting};
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
    /// Damp the shimmer of fine texture from frame to frame: off (frames as the model draws
    /// them), auto (blend where the source is unchanged), strong (more history: full-strength
    /// texture, less faithful)
    #[arg(long, value_enum, default_value_t = vsr_media::temporal::Temporal::Off)]
    pub temporal: vsr_media::temporal::Temporal,
    /// Only the first N frames
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub frames: Option<u64>,
    /// Largest output frame, WIDTHxHEIGHT
    #[arg(long, default_value = "7680x4320", value_parser = parse_size)]
    pub max_output: (u64, u64),
    /// Print progress as one JSON object per line on stdout
    #[arg(long)]
    pub json_progress: bool,
    /// Seconds of source per segment: the work an interruption can cost (0 = one segment)
    #[arg(long, default_value_t = vsr_media::video::segment::DEFAULT_SECONDS)]
    pub segment_seconds: f64,
    /// Start over instead of resuming an interrupted run of the same command
    #[arg(long)]
    pub no_resume: bool,
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
    // The paths first: a wrong one is told before minutes of model loading.
    super::refuse_overwriting_input(&args.input, &args.output)?;
    let output_lock = super::output_lock::lock_output(&config.cache_dir, &args.output)?;
    if output_lock.is_none() {
        eprintln!(
            "note: no lock file could be made (cache and temporary folders not writable): \
             a second run writing {} at the same time would not be kept out",
            args.output.display()
        );
    }
    // The input's content is part of the work's key: an edited file never reuses old segments.
    let input_identity = vsr_media::video::segment::file_identity(&args.input)
        .map_err(|e| super::input_error(&args.input, e))?;
    let settings = vsr_media::settings::Settings {
        temporal_stability: args.temporal,
        ..args.model.settings()
    };
    let enhancer = super::load(&settings, config, &args.run)?;
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
        segmenting: Segmenting {
            seconds: (args.segment_seconds > 0.0).then_some(args.segment_seconds),
            resume: !args.no_resume,
            input_identity,
        },

        // One process: nobody else works on these segments.
        sharing: &vsr_media::video::segment::LocalLocks,
    };
    let work = pipeline::work_dir(&job);
    if args.no_resume {
        eprintln!("--no-resume: starting over; earlier work on this output is discarded");
    }
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
    let mut announced = false;
    let mut report = |p: &Progress| {
        if !announced && p.resumed_frames > 0 {
            bar.suspend(|| {
                eprintln!(
                    "resuming: {} of {} frames were finished by an earlier run",
                    p.resumed_frames, p.total_frames
                )
            });
        }
        announced = true;
        if args.json_progress {
            // A reader that went away (`| head`) stops the job as Ctrl-C would.
            let line = serde_json::to_string(p).unwrap_or_default();
            if writeln!(std::io::stdout().lock(), "{line}").is_err() {
                cancel.store(true, Ordering::Relaxed);
            }
        }
        bar.set_length(p.total_frames);
        bar.set_position(p.current_frame);
        bar.set_message(format!("{:.2} fps ETA {:.0}s", p.fps, p.eta_seconds));
    };
    let result = pipeline::run(&job, &mut report, &cancel);
    bar.finish();
    let summary = result.map_err(|e| {
        if vsr_media::video::segment::has_finished_segments(&work) {
            eprintln!(
                "finished segments are kept in {}: run the same command again to resume",
                work.display()
            );
        }
        let message = format!("{e} [{}]", e.code());
        match e {
            vsr_media::video::PipelineError::Cancelled => super::Interrupted(message).into(),
            _ => anyhow::anyhow!(message),
        }
    })?;
    let resumed = if summary.resumed_frames > 0 {
        format!(" ({} resumed)", summary.resumed_frames)
    } else {
        String::new()
    };
    // What the stabiliser cost, next to the models, on these frames.
    let stabiliser = if summary.stabiliser_seconds > 0.0 {
        format!(
            "; stabiliser {:.1} ms/frame, {:.1}% of the model's time",
            1e3 * summary.stabiliser_seconds / summary.frames.max(1) as f64,
            100.0 * summary.stabiliser_seconds / summary.model_seconds.max(1e-9)
        )
    } else {
        String::new()
    };
    eprintln!(
        "{}: {} frames{resumed} {}x{} -> {}x{} with {} on {} in {:.1}s ({:.2} fps){stabiliser}",
        args.output.display(),
        summary.frames + summary.resumed_frames,
        summary.input.video.width,
        summary.input.video.height,
        summary.output_size.0,
        summary.output_size.1,
        enhancer.model_names(),
        enhancer.devices(),
        summary.seconds,
        summary.frames as f64 / summary.seconds.max(1e-9)
    );
    for note in &summary.left_out {
        eprintln!("note: {note}");
    }
    if let Some(warning) = summary.damage_warning() {
        eprintln!("warning: {warning}");
    }
    Ok(())
}
