//! The video job: decode, upscale and encode run concurrently with small bounded queues
//! between them, so memory stays flat whatever the video's length and the model — the slowest
//! stage — never waits for I/O. The output appears under its name only when complete.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use vsr_runtime::Tensor;

use super::decode::Decoder;
use super::encode::{set_rotation, EncodeSettings, Encoder};
use super::mkv::RawFormat;
use super::probe::{probe, Limits, MediaInfo};
use super::PipelineError;
use crate::enhance::Enhancer;

/// Frames in flight between two stages.
const QUEUE: usize = 2;

/// What a job asks for.
pub struct Job<'a> {
    pub input: &'a Path,
    pub output: &'a Path,
    pub enhancer: &'a Enhancer,
    pub encode: EncodeSettings,
    pub limits: Limits,
    /// Largest output frame allowed (width, height).
    pub max_output: (u64, u64),
    /// Stop after this many frames.
    pub max_frames: Option<u64>,
}

/// Progress after each frame.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub current_frame: u64,
    pub total_frames: u64,
    pub fps: f64,
    pub eta_seconds: f64,
    pub progress: f64,
}

/// What a finished job did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub frames: u64,
    pub seconds: f64,
    pub input: MediaInfo,
    pub output_size: (u32, u32),
}

/// Checks the input and the output size; nothing is decoded yet.
pub fn validate(job: &Job) -> Result<MediaInfo, PipelineError> {
    let info = probe(job.input, &job.limits)?;
    let s = job.enhancer.scale() as u64;
    let (w, h) = (info.video.width as u64 * s, info.video.height as u64 * s);
    // Either orientation fits: a portrait 4K frame is as large as a landscape one.
    let (mw, mh) = job.max_output;
    if !((w <= mw && h <= mh) || (w <= mh && h <= mw)) {
        return Err(PipelineError::OutputTooLarge {
            width: w,
            height: h,
            max_width: mw,
            max_height: mh,
        });
    }
    Ok(info)
}

/// Runs the job. `progress` is called after every frame; setting `cancel` stops it within a
/// frame, removing everything it wrote.
pub fn run(
    job: &Job,
    progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<Summary, PipelineError> {
    let info = validate(job)?;
    let [temp, rotated] = temporaries(job.output);
    let result = run_to(job, &info, &temp, progress, cancel).and_then(|summary| {
        // A cancel that arrived while the encoder was finishing still wins.
        if cancel.load(Ordering::Relaxed) {
            return Err(PipelineError::Cancelled);
        }
        let done = if info.video.rotation != 0 {
            set_rotation(&temp, &rotated, info.video.rotation)?;
            &rotated
        } else {
            &temp
        };
        std::fs::rename(done, job.output).map_err(PipelineError::Io)?;
        Ok(summary)
    });
    for leftover in [&temp, &rotated] {
        let _ = std::fs::remove_file(leftover);
    }
    result
}

/// The files a job on `output` writes before the final rename (this process's names).
pub fn temporaries(output: &Path) -> [PathBuf; 2] {
    [temp_path(output, "partial"), temp_path(output, "rotated")]
}

/// `dir/.name.STAGE-PID.ext`: same directory (so the rename is atomic), same extension (so
/// FFmpeg picks the same container).
fn temp_path(output: &Path, stage: &str) -> PathBuf {
    let name = output
        .file_name()
        .map_or("output".into(), |n| n.to_string_lossy().into_owned());
    let ext = output
        .extension()
        .map_or(String::new(), |e| format!(".{}", e.to_string_lossy()));
    output.with_file_name(format!(".{name}.{stage}-{}{ext}", std::process::id()))
}

fn run_to(
    job: &Job,
    info: &MediaInfo,
    temp: &Path,
    progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<Summary, PipelineError> {
    let format = if info.video.bit_depth > 8 {
        RawFormat::Rgb48
    } else {
        RawFormat::Rgb24
    };
    let scale = job.enhancer.scale() as u32;
    let (w, h) = (info.video.width, info.video.height);
    let out_size = (w * scale, h * scale);
    let total = job
        .max_frames
        .map_or(info.video.frames, |m| m.min(info.video.frames));
    let started = Instant::now();

    // Pixel conversions happen in the decode and encode threads, off the model's path.
    let (frames_tx, frames_rx) = sync_channel::<(Tensor, i64, (i64, i64))>(QUEUE);
    let (out_tx, out_rx) = sync_channel::<(Tensor, i64, (i64, i64))>(QUEUE);
    std::thread::scope(|scope| {
        // `move`: each thread owns its end of the queues, so finishing closes them.
        let decoder = scope.spawn(move || -> Result<(), PipelineError> {
            let mut dec = Decoder::spawn(
                job.input,
                info,
                format,
                job.enhancer.prefilter().as_deref(),
                job.max_frames,
                None,
            )?;
            while let Some(frame) = dec.next_frame()? {
                if cancel.load(Ordering::Relaxed) {
                    return Err(PipelineError::Cancelled);
                }
                let tb = dec
                    .time_base()
                    .ok_or_else(|| PipelineError::decode("no time base reported"))?;
                let input = to_tensor(&frame.data, w as usize, h as usize, format);
                if frames_tx.send((input, frame.pts, tb)).is_err() {
                    break; // a later stage failed; it reports why
                }
            }
            Ok(())
        });
        let encoder = scope.spawn(move || -> Result<(), PipelineError> {
            let mut enc: Option<Encoder> = None;
            for (out, pts, tb) in out_rx {
                if enc.is_none() {
                    enc = Some(Encoder::spawn(
                        job.input,
                        info,
                        temp,
                        out_size,
                        format,
                        tb,
                        &job.encode,
                    )?);
                }
                let data = from_tensor(&out, format);
                job.enhancer.recycle(out);
                enc.as_mut().expect("started").write(pts, &data)?;
            }
            if cancel.load(Ordering::Relaxed) {
                return Err(PipelineError::Cancelled); // dropping the encoder kills FFmpeg
            }
            match enc {
                Some(e) => e.finish(),
                None => Err(PipelineError::decode("the video has no decodable frames")),
            }
        });

        // The model runs here, on the calling thread (it has its own worker pool).
        let mut done = 0u64;
        let mut model_result = Ok(());
        for (input, pts, tb) in frames_rx.iter() {
            if cancel.load(Ordering::Relaxed) {
                model_result = Err(PipelineError::Cancelled);
                break;
            }
            let out = match job.enhancer.process(&input) {
                Ok(o) => o,
                Err(e) => {
                    model_result = Err(e.into());
                    break;
                }
            };
            if out_tx.send((out, pts, tb)).is_err() {
                break;
            }
            done += 1;
            let secs = started.elapsed().as_secs_f64();
            let fps = done as f64 / secs.max(1e-9);
            let total = total.max(done);
            progress(&Progress {
                current_frame: done,
                total_frames: total,
                fps,
                eta_seconds: (total - done) as f64 / fps.max(1e-9),
                progress: 100.0 * done as f64 / total as f64,
            });
        }
        drop(frames_rx);
        drop(out_tx);
        let decoded = decoder.join().expect("decoder thread panicked");
        let encoded = encoder.join().expect("encoder thread panicked");
        // The first failure in pipeline order explains the others.
        decoded.and(model_result).and(encoded)?;
        Ok(Summary {
            frames: done,
            seconds: started.elapsed().as_secs_f64(),
            input: info.clone(),
            output_size: out_size,
        })
    })
}

fn to_tensor(data: &[u8], w: usize, h: usize, format: RawFormat) -> Tensor {
    let values = match format {
        RawFormat::Rgb24 => data.iter().map(|&v| v as f32 * (1.0 / 255.0)).collect(),
        RawFormat::Rgb48 => data
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as f32 * (1.0 / 65535.0))
            .collect(),
    };
    Tensor::from_vec(h, w, 3, values)
}

fn from_tensor(t: &Tensor, format: RawFormat) -> Vec<u8> {
    match format {
        RawFormat::Rgb24 => t
            .data
            .iter()
            .map(|&v| (v * 255.0 + 0.5).clamp(0.0, 255.0) as u8)
            .collect(),
        RawFormat::Rgb48 => t
            .data
            .iter()
            .flat_map(|&v| ((v * 65535.0 + 0.5).clamp(0.0, 65535.0) as u16).to_le_bytes())
            .collect(),
    }
}
