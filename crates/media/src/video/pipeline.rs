//! The video job: the source is cut into segments (`segment`), each decoded, upscaled and
//! encoded into its own file, then the segments are joined with every other stream of the
//! source (`assemble`). Decode, upscale and encode run concurrently with small bounded queues
//! between them and carry on across segment boundaries, so memory stays flat whatever the
//! video's length and the model — the slowest stage — never waits for I/O. Finished segments
//! survive a crash: running the same job again resumes after them. The output appears under
//! its name only when complete.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use vsr_runtime::Tensor;

use super::assemble::{
    assemble, check_container, check_other_streams, left_out, rotation_in_pixels,
};
use super::decode::{Decoder, Start};
use super::encode::{EncodeSettings, Encoder};
use super::mkv::RawFormat;
use super::probe::{probe, Limits, MediaInfo};
use super::segment::{self, Claim, Segment, WorkDir};
use super::PipelineError;
use crate::enhance::Enhancer;

/// Frames in flight between two stages.
const QUEUE: usize = 2;

/// How a job is cut into segments, and whether the work of an interrupted run is reused.
#[derive(Debug, Clone)]
pub struct Segmenting {
    /// Seconds of source per segment; `None`: the whole video is one segment.
    pub seconds: Option<f64>,
    /// Reuse the finished segments of an interrupted run of the same job.
    pub resume: bool,
    /// What identifies the input's content (a hash of it, or the id of an upload that never
    /// changes): with the models and settings, it keys the work directory.
    pub input_identity: String,
}

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
    pub segmenting: Segmenting,
    /// How segments are shared with other workers of the same job.
    pub sharing: &'a dyn segment::Sharing,
}

/// Progress after each frame.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Frames finished, those of earlier runs included.
    pub current_frame: u64,
    pub total_frames: u64,
    /// Frames upscaled per second by this run.
    pub fps: f64,
    pub eta_seconds: f64,
    pub progress: f64,
    /// Frames an earlier, interrupted run finished (in segments kept on disk).
    pub resumed_frames: u64,
    /// Frames this run upscaled.
    pub upscaled_frames: u64,
}

/// What a finished job did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Frames this run upscaled.
    pub frames: u64,
    /// Frames taken from an earlier run's finished segments.
    pub resumed_frames: u64,
    pub seconds: f64,
    pub input: MediaInfo,
    pub output_size: (u32, u32),
    pub segments: usize,
    /// Seconds this run spent in the models and in the temporal stabiliser (zero when off):
    /// what the stabiliser costs, measured on the real frames.
    pub model_seconds: f64,
    pub stabiliser_seconds: f64,
    /// How many times FFmpeg reported the source damaged (cut short, or packets it could not
    /// decode), over every segment: this run's, an earlier run's and other workers'. The
    /// output then lacks those frames.
    pub damage_reports: u64,
    /// What of the source the output's container does not keep as it was
    /// ([`super::assemble::left_out`]), for the user.
    pub left_out: Vec<String>,
}

impl Summary {
    /// A warning for the user when the source was damaged: the job completed with the frames
    /// that decoded, which may be fewer than the container lists.
    pub fn damage_warning(&self) -> Option<String> {
        if self.damage_reports == 0 {
            return None;
        }
        let done = self.frames + self.resumed_frames;
        let listed = if self.input.video.frames_exact {
            format!(
                " ({done} of the {} frames it lists)",
                self.input.video.frames
            )
        } else {
            format!(" ({done} frames)")
        };
        Some(format!(
            "the source is damaged or truncated: FFmpeg could not read all of it ({} errors); the output holds the frames that decoded{listed}",
            self.damage_reports
        ))
    }
}

/// Checks the output's container, the input and the output size; nothing is decoded yet.
pub fn validate(job: &Job) -> Result<MediaInfo, PipelineError> {
    check_container(job.output, job.encode.codec)?;
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

/// What the work of a job depends on, hashed: its input, models, settings, encoder settings,
/// cut and frame limit, and this version of the program. Anything else gets another key.
pub fn job_key(job: &Job) -> String {
    let facts = serde_json::json!({
        "program": env!("CARGO_PKG_VERSION"),
        "input": job.segmenting.input_identity,
        "enhancer": job.enhancer.fingerprint(),
        "codec": job.encode.codec,
        "crf": job.encode.crf,
        "maxFrames": job.max_frames,
        "segmentSeconds": job.segmenting.seconds,
    });
    let digest = Sha256::digest(facts.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the job. `progress` is called after every frame; setting `cancel` stops it within a
/// frame. A stopped or failed job keeps its finished segments for the next run of the same
/// job (`remove_work` drops them); a completed one removes them.
pub fn run(
    job: &Job,
    progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<Summary, PipelineError> {
    let info = validate(job)?;
    check_other_streams(job.input, &info, job.output)?;
    let started = Instant::now();
    let work = WorkDir::open(job.output, &job_key(job), job.segmenting.resume, || {
        segment::plan(job.input, &info, job.segmenting.seconds, job.max_frames)
    })?;
    // A stop asked for wins over what it caused: Ctrl-C reaches FFmpeg too, whose broken
    // pipe would otherwise be told as an encoder failure.
    let counts = upscale_segments(job, &info, &work, progress, cancel, true).map_err(|e| {
        if cancel.load(Ordering::Relaxed) {
            PipelineError::Cancelled
        } else {
            e
        }
    })?;
    // A cancel that arrived while the last segment was finishing still wins.
    if cancel.load(Ordering::Relaxed) {
        return Err(PipelineError::Cancelled);
    }
    let temp = temp_path(job.output, "partial");
    let assembled = assemble(job.input, &info, &work, &temp, job.encode.shortest)
        .and_then(|()| std::fs::rename(&temp, job.output).map_err(PipelineError::Io));
    if assembled.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    assembled?;
    let segments = work.plan.segments.len();
    let damage_reports = work.recorded_damage();
    let not_kept = left_out(&info, job.output, job.encode.shortest);
    work.remove();
    Ok(Summary {
        frames: counts.upscaled,
        resumed_frames: counts.resumed,
        seconds: started.elapsed().as_secs_f64(),
        output_size: output_size(job, &info),
        input: info,
        segments,
        model_seconds: counts.model.as_secs_f64(),
        stabiliser_seconds: counts.stabiliser.as_secs_f64(),
        damage_reports,
        left_out: not_kept,
    })
}

/// Joins a job another process runs: upscales the segments nobody holds until none is left,
/// and returns the frames it upscaled. The job's owner joins the segments. Nothing to do if
/// the owner has not written its plan yet.
pub fn help(
    job: &Job,
    progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<u64, PipelineError> {
    let Some(work) = WorkDir::existing(job.output, &job_key(job)) else {
        return Ok(0);
    };
    let info = validate(job)?;
    Ok(upscale_segments(job, &info, &work, progress, cancel, false)?.upscaled)
}

/// Where `job` keeps its finished segments until its output is complete.
pub fn work_dir(job: &Job) -> PathBuf {
    WorkDir::path_for(job.output, &job_key(job))
}

/// Removes what an interrupted job kept for a resume (a cancelled or deleted job).
pub fn remove_work(output: &Path) {
    segment::remove_work(output);
}

/// The files a job on `output` writes before the final rename (this process's names).
pub fn temporaries(output: &Path) -> [PathBuf; 1] {
    [temp_path(output, "partial")]
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

fn output_size(job: &Job, info: &MediaInfo) -> (u32, u32) {
    let scale = job.enhancer.scale() as u32;
    (info.video.width * scale, info.video.height * scale)
}

/// Frames done, for progress.
struct Counts {
    total: u64,
    /// Finished before this run started.
    resumed: u64,
    /// Finished by other workers during this run.
    by_others: u64,
    /// Upscaled by this run.
    upscaled: u64,
    started: Instant,
    /// Time in the models and in the stabiliser, on the model thread.
    model: Duration,
    stabiliser: Duration,
}

impl Counts {
    fn progress(&self) -> Progress {
        let done = self.resumed + self.by_others + self.upscaled;
        let total = self.total.max(done).max(1);
        let fps = self.upscaled as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        Progress {
            current_frame: done,
            total_frames: total,
            fps,
            // Unknown (0) until this run has upscaled a frame: a resumed run starts at fps 0.
            eta_seconds: if fps > 0.0 {
                (total - done) as f64 / fps
            } else {
                0.0
            },
            progress: 100.0 * done as f64 / total as f64,
            resumed_frames: self.resumed,
            upscaled_frames: self.upscaled,
        }
    }
}

/// Upscales every segment not finished yet. `wait`: segments other workers hold are waited
/// for (and done here if their worker died); without it they are left to them.
fn upscale_segments(
    job: &Job,
    info: &MediaInfo,
    work: &WorkDir,
    progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
    wait: bool,
) -> Result<Counts, PipelineError> {
    let mut counts = Counts {
        total: work.plan.total_frames(),
        resumed: 0,
        by_others: 0,
        upscaled: 0,
        started: Instant::now(),
        model: Duration::ZERO,
        stabiliser: Duration::ZERO,
    };
    let mut todo = Vec::new();
    for s in &work.plan.segments {
        match work.done(s.index) {
            Some(done) => counts.resumed += done.frames,
            None => todo.push(s.clone()),
        }
    }
    if counts.resumed > 0 {
        tracing::info!(
            frames = counts.resumed,
            segments = work.plan.segments.len() - todo.len(),
            "resuming after the finished segments"
        );
        progress(&counts.progress());
    }
    while !todo.is_empty() {
        let held = run_segments(job, info, work, &todo, &mut counts, progress, cancel)?;
        todo.retain(|s| held.contains(&s.index));
        if !wait {
            break;
        }
        let mut still = Vec::new();
        for s in todo {
            // Whoever holds it finishes it, or dies and leaves it to us.
            job.sharing.wait_unclaimed(work, s.index)?;
            match work.done(s.index) {
                Some(done) => counts.by_others += done.frames,
                None => still.push(s),
            }
        }
        todo = still;
    }
    Ok(counts)
}

/// What goes down the queues: frames, and the end of each segment.
enum Item {
    Frame {
        segment: usize,
        image: Tensor,
        pts: i64,
        time_base: (i64, i64),
    },
    /// The segment's frames have all been sent, with the damage FFmpeg reported while they
    /// were decoded; its claim goes with it until it is recorded.
    End {
        segment: usize,
        claim: Claim,
        damage: u64,
    },
}

/// Decodes, upscales and encodes the segments of `todo` that no one else holds, in order;
/// returns the ones others held.
/// Runs `f`, adding the time it took to `total`.
fn timed<T>(total: &mut Duration, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let value = f();
    *total += started.elapsed();
    value
}

fn run_segments(
    job: &Job,
    info: &MediaInfo,
    work: &WorkDir,
    todo: &[Segment],
    counts: &mut Counts,
    progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<Vec<usize>, PipelineError> {
    let format = raw_format(info);
    let out_size = output_size(job, info);
    // Pixel conversions happen in the decode and encode threads, off the model's path.
    let (frames_tx, frames_rx) = sync_channel::<Item>(QUEUE);
    let (out_tx, out_rx) = sync_channel::<Item>(QUEUE);
    std::thread::scope(|scope| {
        // `move`: each thread owns its end of the queues, so finishing closes them.
        let decoder =
            scope.spawn(move || decode_segments(job, info, work, todo, frames_tx, cancel));
        let encoder =
            scope.spawn(move || encode_segments(job, info, work, out_size, format, out_rx, cancel));

        // The model runs here, on the calling thread (it has its own worker pool), then the
        // stabiliser, in frame order, reset at every segment start.
        let mut model_result = Ok(());
        let mut stabiliser = job.enhancer.stabiliser();
        let mut segment_now = None;
        for item in frames_rx.iter() {
            if cancel.load(Ordering::Relaxed) {
                model_result = Err(PipelineError::Cancelled);
                break;
            }
            let item = match item {
                Item::Frame {
                    segment,
                    image,
                    pts,
                    time_base,
                } => match timed(&mut counts.model, || job.enhancer.process(&image)) {
                    Ok(upscaled) => {
                        let image = match &mut stabiliser {
                            Some(s) => {
                                if segment_now != Some(segment) {
                                    s.reset();
                                    segment_now = Some(segment);
                                }
                                timed(&mut counts.stabiliser, || {
                                    job.enhancer.install(|| s.apply(&image, upscaled))
                                })
                            }
                            None => upscaled,
                        };
                        counts.upscaled += 1;
                        progress(&counts.progress());
                        Item::Frame {
                            segment,
                            image,
                            pts,
                            time_base,
                        }
                    }
                    Err(e) => {
                        model_result = Err(e.into());
                        break;
                    }
                },
                end => end,
            };
            if out_tx.send(item).is_err() {
                break;
            }
        }
        drop(frames_rx);
        drop(out_tx);
        let decoded = decoder.join().expect("decoder thread panicked");
        let encoded = encoder.join().expect("encoder thread panicked");
        // The first failure in pipeline order explains the others.
        let held = decoded?;
        model_result?;
        encoded?;
        Ok(held)
    })
}

/// The frames' format between the stages: 16 bits a channel for sources above 8 bits.
fn raw_format(info: &MediaInfo) -> RawFormat {
    if info.video.bit_depth > 8 {
        RawFormat::Rgb48
    } else {
        RawFormat::Rgb24
    }
}

/// The decode thread: claims each segment as it reaches it and sends its frames; one FFmpeg
/// decoder runs on across consecutive segments. Returns the segments others held.
fn decode_segments(
    job: &Job,
    info: &MediaInfo,
    work: &WorkDir,
    todo: &[Segment],
    tx: SyncSender<Item>,
    cancel: &AtomicBool,
) -> Result<Vec<usize>, PipelineError> {
    let (w, h) = (info.video.width as usize, info.video.height as usize);
    let format = raw_format(info);
    let prefilter = job.enhancer.prefilter();
    let spawn = |start: Start| {
        // An unindexed plan is one segment cut by a frame count.
        let limit = if work.plan.indexed {
            None
        } else {
            job.max_frames
        };
        Decoder::spawn(job.input, info, format, prefilter.as_deref(), limit, start)
    };
    let mut held = Vec::new();
    // The running decoder, the segment it continues into and its damage count when the
    // segment before ended (what is counted from there on is the next segment's).
    let mut running: Option<(Decoder, usize, u64)> = None;
    // A frame read past the end of the previous segment: the next one's first.
    let mut pending = None;
    for s in todo {
        let Some(claim) = job.sharing.try_claim(work, s.index)? else {
            held.push(s.index);
            continue;
        };
        if work.done(s.index).is_some() {
            continue; // finished by another worker since the list was made
        }
        // The damage reported while this segment is decoded is its decoder's count past
        // `damage_before`; `None` until the first frame of a decoder that reads the file from
        // its start, whose earlier reports are other segments'.
        let (mut dec, mut seeked, mut damage_before) = match running.take() {
            Some((dec, next, count)) if next == s.index => (dec, false, Some(count)),
            _ => {
                pending = None;
                let start = match s.start {
                    None => Start::Beginning,
                    Some(pts) => Start::Frame {
                        pts,
                        seek: Some(segment::seek_seconds(pts, work.plan.time_base)),
                    },
                };
                (spawn(start)?, s.start.is_some(), Some(0))
            }
        };
        let mut sent = 0u64;
        let mut ended = false;
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(PipelineError::Cancelled);
            }
            let frame = match pending.take() {
                Some(f) => Some(f),
                None => dec.next_frame()?,
            };
            let Some(frame) = frame else {
                ended = true;
                break;
            };
            if s.is_past(frame.pts) {
                pending = Some(frame);
                break;
            }
            if seeked && sent == 0 && s.start.is_some_and(|start| frame.pts != start) {
                // The seek went past the keyframe (some containers seek coarsely): decode
                // from the start instead, dropping everything before the segment.
                tracing::info!(
                    segment = s.index,
                    "seek missed the segment's first frame; decoding from the start"
                );
                // The new decoder reads the file from its start: its reports before this
                // segment's first frame are the earlier segments'; the old one's are dropped
                // with its frames.
                dec = spawn(Start::Frame {
                    pts: s.start.expect("checked"),
                    seek: None,
                })?;
                damage_before = None;
                seeked = false;
                continue;
            }
            let time_base = dec
                .time_base()
                .ok_or_else(|| PipelineError::decode("no time base reported"))?;
            damage_before.get_or_insert_with(|| dec.damage_reports());
            let image = to_tensor(&frame.data, w, h, format);
            sent += 1;
            let item = Item::Frame {
                segment: s.index,
                image,
                pts: frame.pts,
                time_base,
            };
            if tx.send(item).is_err() {
                return Ok(held); // a later stage failed; it reports why
            }
        }
        if sent != s.frames {
            tracing::debug!(
                segment = s.index,
                sent,
                indexed = s.frames,
                "frame count differs from the index"
            );
        }
        let count = dec.damage_reports();
        let damage = count - damage_before.unwrap_or(count);
        if tx
            .send(Item::End {
                segment: s.index,
                claim,
                damage,
            })
            .is_err()
        {
            return Ok(held);
        }
        if !ended {
            running = Some((dec, s.index + 1, count));
        }
    }
    Ok(held)
}

/// The encode thread: one encoder per segment, each segment recorded durably when its file
/// is complete.
fn encode_segments(
    job: &Job,
    info: &MediaInfo,
    work: &WorkDir,
    out_size: (u32, u32),
    format: RawFormat,
    rx: Receiver<Item>,
    cancel: &AtomicBool,
) -> Result<(), PipelineError> {
    let mut enc: Option<(Encoder, usize, u64)> = None;
    let discard = |enc: &mut Option<(Encoder, usize, u64)>| {
        if let Some((e, segment, _)) = enc.take() {
            drop(e); // kills FFmpeg
            let _ = std::fs::remove_file(work.partial_file(segment));
        }
    };
    for item in rx {
        match item {
            Item::Frame {
                segment,
                image,
                pts,
                time_base,
            } => {
                if enc.is_none() {
                    let file = work.partial_file(segment);
                    let e = Encoder::spawn(
                        info,
                        &file,
                        out_size,
                        format,
                        time_base,
                        &job.encode,
                        rotation_in_pixels(job.output, info),
                    )?;
                    enc = Some((e, segment, 0));
                }
                let data = from_tensor(&image, format);
                job.enhancer.recycle(image);
                let (e, _, written) = enc.as_mut().expect("started");
                if let Err(err) = e.write(pts, &data) {
                    discard(&mut enc);
                    return Err(err);
                }
                *written += 1;
            }
            Item::End {
                segment,
                claim,
                damage,
            } => {
                let frames = match enc.take() {
                    Some((e, _, written)) => {
                        if let Err(err) = e.finish() {
                            let _ = std::fs::remove_file(work.partial_file(segment));
                            return Err(err);
                        }
                        written
                    }
                    None => 0,
                };
                work.record(segment, frames, damage)?;
                drop(claim);
            }
        }
    }
    discard(&mut enc);
    if cancel.load(Ordering::Relaxed) {
        return Err(PipelineError::Cancelled);
    }
    Ok(())
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
