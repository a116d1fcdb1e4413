//! Trying settings before spending minutes: start a draft, preview one frame with any
//! settings, and compare a frame of the result with the source.

use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use vsr_cuda::DeviceRequest;
use vsr_media::code::Code;
use vsr_media::enhance::prepare;
use vsr_media::image::{png_bytes, Rgb8};
use vsr_media::settings::Settings;
use vsr_media::temporal::side_by_side::{self, Window};
use vsr_media::temporal::{Stabiliser, Temporal};

use super::tasks::visible;
use super::upload::{check_queue_room, check_settings};
use super::view::{task_view, TaskView};
use crate::auth::Owner;
use crate::problem::Problem;
use crate::store::{Status, Task};
use crate::AppState;

/// `POST /api/start/<id>` with the final settings: queues a draft.
pub async fn start(
    State(app): State<AppState>,
    Extension(owner): Extension<Owner>,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Result<(StatusCode, Json<TaskView>), Problem> {
    let mut task = visible(&app, &owner, &id).await?;
    if task.status != Status::Draft {
        return Err(not_draft(&task));
    }
    let settings = match body {
        Some(Json(v)) => settings_from(v)?,
        None => task.settings.clone(),
    };
    let checked = check_settings(&app, settings, &task.input).await?;
    // A started draft waits like an upload: the queue's limit holds for both.
    check_queue_room(&app).await?;
    task.settings = checked.settings;
    task.models = checked.models;
    task.notes = checked.notes;
    task.output_size = checked.output_size;
    if !app.store.start(&task).await? {
        return Err(not_draft(&task));
    }
    let task = visible(&app, &owner, &id).await?;
    tracing::info!(task = %id, models = ?task.models, "draft started");
    Ok((StatusCode::ACCEPTED, Json(task_view(&app, &task))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PreviewRequest {
    /// Seconds into the video (default: the middle).
    time: Option<f64>,
    settings: Option<Value>,
    /// With the temporal stabiliser on: how many consecutive frames to show with and without
    /// it (default [`CONSECUTIVE`], 0 for none, at most [`MAX_CONSECUTIVE`]).
    consecutive: Option<usize>,
}

/// Consecutive frames a preview shows with and without the stabiliser, unless asked otherwise:
/// enough to see texture shimmer from one to the next.
const CONSECUTIVE: usize = 4;
/// The most a preview shows: each is a run of the models.
const MAX_CONSECUTIVE: usize = 8;
/// The largest window of the output the consecutive frames show (pixels): shimmer shows at
/// full size, and a window keeps the preview's cost to a few model runs on small pictures.
const CONSECUTIVE_WINDOW: (usize, usize) = (640, 360);

/// `POST /api/preview/<id>`: one frame of the upload through the given settings, before and
/// after, as PNG data URLs; with the temporal stabiliser on, also a window of a few
/// consecutive frames from there, as the models drew them and as the stabiliser left them.
/// Decoding is FFmpeg's (a child process); previews run one at a time.
pub async fn preview(
    State(app): State<AppState>,
    Extension(owner): Extension<Owner>,
    Path(id): Path<String>,
    Json(req): Json<PreviewRequest>,
) -> Result<Json<Preview>, Problem> {
    let task = visible(&app, &owner, &id).await?;
    let settings = match req.settings {
        Some(v) => settings_from(v)?,
        None => task.settings.clone(),
    };
    let checked = check_settings(&app, settings, &task.input).await?;
    let time = frame_time(req.time, &task)?;
    let consecutive = match (req.consecutive, checked.settings.temporal_stability) {
        (Some(n), _) if n > MAX_CONSECUTIVE => {
            return Err(Problem::bad_field(
                Code::InvalidSettings,
                "consecutive",
                format!(
                    "{n} consecutive frames asked for; a preview shows at most {MAX_CONSECUTIVE}"
                ),
            ))
        }
        (_, Temporal::Off) => 0,
        (n, _) => n.unwrap_or(CONSECUTIVE),
    };
    let _turn = app.previews.acquire().await.map_err(Problem::internal)?;
    let _probe = app.probe_slot().await?;
    let started = Instant::now();
    let (input, base, settings) = (
        stored(app.files.fetch_input(&task).await?, &id)?,
        app.base.clone(),
        checked.settings.clone(),
    );
    // Previews run in this process, so on the CPU: the GPU belongs to the workers.
    let options = app.config.run_options().map_err(Problem::internal)?;
    let limits = app.config.limits.clone();
    let (before, after, stabilised) = tokio::task::spawn_blocking(move || {
        let mut frames = source_frames(&input, &limits, time, consecutive.max(1))?;
        let prepared =
            prepare(&settings, &base, DeviceRequest::Cpu, options).map_err(Problem::internal)?;
        let enhancer = &prepared.enhancer;
        let after = enhancer
            .process(&frames[0].1.to_tensor())
            .map_err(Problem::internal)?;
        let shown = &frames[..consecutive.min(frames.len())];
        let stabilised = stabilised(enhancer, settings.temporal_stability, shown)?;
        let before = frames.swap_remove(0).1;
        Ok::<_, Problem>((before, Rgb8::from_tensor(&after), stabilised))
    })
    .await
    .map_err(Problem::internal)??;
    Ok(Json(Preview {
        frame: comparison(&id, time, &before, &after),
        seconds: (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
        models: checked.models,
        notes: checked.notes,
        stabilised,
    }))
}

/// The centred window of `frames` through the models, as drawn and stabilised with `mode`,
/// as the preview returns them; none with the stabiliser off or no frames asked for.
fn stabilised(
    enhancer: &vsr_media::enhance::Enhancer,
    mode: Temporal,
    frames: &[(f64, Rgb8)],
) -> Result<Option<Stabilised>, Problem> {
    let (Some(stabiliser), Some((_, first))) = (Stabiliser::new(mode), frames.first()) else {
        return Ok(None);
    };
    let scale = enhancer.scale();
    let window = Window::centred(first.width, first.height, scale, CONSECUTIVE_WINDOW);
    let tensors: Vec<_> = frames.iter().map(|(_, f)| f.to_tensor()).collect();
    let pairs = side_by_side::consecutive(enhancer, stabiliser, &tensors, window)
        .map_err(Problem::internal)?;
    let shown = pairs.iter().enumerate().map(|(i, pair)| {
        let previous = i.checked_sub(1).map(|p| &pairs[p]);
        let flicker = |pick: fn(&side_by_side::Pair) -> &vsr_runtime::Tensor| {
            previous.map(|p| (side_by_side::flicker(p, pair, pick) * 100.0).round() / 100.0)
        };
        StabilisedFrame {
            time: frames[i].0,
            without: data_url(&Rgb8::from_tensor(&pair.without)),
            with: data_url(&Rgb8::from_tensor(&pair.with)),
            flicker_without: flicker(|p| &p.without),
            flicker_with: flicker(|p| &p.with),
        }
    });
    Ok(Some(Stabilised {
        temporal_stability: mode,
        window: OutputWindow {
            x: window.x * scale,
            y: window.y * scale,
            width: window.width * scale,
            height: window.height * scale,
        },
        frames: shown.collect(),
    }))
}

#[derive(Deserialize)]
pub struct FrameQuery {
    time: Option<f64>,
}

/// `GET /api/frames/<id>?time=S`: the same frame of the source and of the finished result.
pub async fn frames(
    State(app): State<AppState>,
    Extension(owner): Extension<Owner>,
    Path(id): Path<String>,
    Query(q): Query<FrameQuery>,
) -> Result<Json<Comparison>, Problem> {
    let task = visible(&app, &owner, &id).await?;
    if task.status == Status::Expired {
        return Err(Problem::new(
            Code::Expired,
            format!("the files of task {id} were deleted after the retention period"),
        ));
    }
    if task.status != Status::Completed {
        return Err(Problem::new(
            Code::NotReady,
            format!(
                "task {id} is {}; frames of the result exist once it is completed",
                task.status.as_str()
            ),
        ));
    }
    let time = frame_time(q.time, &task)?;
    let _probe = app.probe_slot().await?;
    let limits = app.config.limits.clone();
    let input = stored(app.files.fetch_input(&task).await?, &id)?;
    let output = stored(app.files.fetch_output(&task).await?, &id)?;
    let (before, after) = tokio::task::spawn_blocking(move || {
        Ok::<_, Problem>((
            source_frame(&input, &limits, time)?,
            source_frame(&output, &limits, time)?,
        ))
    })
    .await
    .map_err(Problem::internal)??;
    Ok(Json(comparison(&id, time, &before, &after)))
}

/// A file of task `id` that storage no longer holds (removed at expiry) is `expired`.
fn stored(file: Option<std::path::PathBuf>, id: &str) -> Result<std::path::PathBuf, Problem> {
    file.ok_or_else(|| {
        Problem::new(
            Code::Expired,
            format!("the files of task {id} are no longer stored"),
        )
    })
}

/// The time asked for, which must lie within the video; the middle if none was asked for.
fn frame_time(asked: Option<f64>, task: &Task) -> Result<f64, Problem> {
    let duration = task.input.duration;
    match asked {
        None => Ok(duration / 2.0),
        Some(t) if t.is_finite() && (0.0..=duration.max(0.0)).contains(&t) => Ok(t),
        Some(t) => Err(Problem::bad_field(
            Code::InvalidSettings,
            "time",
            format!("time {t} s is outside the video (0 to {duration:.3} s)"),
        )),
    }
}

/// The same frame before and after, as PNG data URLs.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    pub task_id: String,
    /// Seconds into the video.
    pub time: f64,
    pub width: usize,
    pub height: usize,
    pub output_width: usize,
    pub output_height: usize,
    pub before: String,
    pub after: String,
}

/// A preview: the comparison, how long the model took, and what the settings chose.
#[derive(Debug, Serialize, ToSchema)]
pub struct Preview {
    #[serde(flatten)]
    pub frame: Comparison,
    pub seconds: f64,
    pub models: Vec<String>,
    pub notes: Vec<String>,
    /// With the temporal stabiliser on: consecutive frames with and without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stabilised: Option<Stabilised>,
}

/// A window of consecutive output frames, as the models drew them and as the stabiliser left
/// them (the first alike: it has no previous frame).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stabilised {
    /// The setting that ran (`auto` or `strong`).
    #[schema(value_type = String)]
    pub temporal_stability: Temporal,
    /// Where the window lies in the output frame.
    pub window: OutputWindow,
    pub frames: Vec<StabilisedFrame>,
}

/// A rectangle of the output frame, in output pixels.
#[derive(Debug, Serialize, ToSchema)]
pub struct OutputWindow {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
}

/// One of the consecutive frames.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StabilisedFrame {
    /// Seconds into the video.
    pub time: f64,
    /// As the models drew it (PNG data URL).
    pub without: String,
    /// As the stabiliser left it (PNG data URL).
    pub with: String,
    /// Flicker: the mean change from the previous frame that the source does not show, in
    /// levels of 255 (none for the first frame).
    pub flicker_without: Option<f64>,
    pub flicker_with: Option<f64>,
}

/// A frame before and after, as both the preview and the result comparison return it.
fn comparison(id: &str, time: f64, before: &Rgb8, after: &Rgb8) -> Comparison {
    Comparison {
        task_id: id.to_string(),
        time,
        width: before.width,
        height: before.height,
        output_width: after.width,
        output_height: after.height,
        before: data_url(before),
        after: data_url(after),
    }
}

fn source_frame(
    path: &std::path::Path,
    limits: &vsr_media::video::Limits,
    time: f64,
) -> Result<Rgb8, Problem> {
    Ok(source_frames(path, limits, time, 1)?.swap_remove(0).1)
}

/// Up to `count` consecutive frames of `path` from `time`, each with its time; one at least.
fn source_frames(
    path: &std::path::Path,
    limits: &vsr_media::video::Limits,
    time: f64,
    count: usize,
) -> Result<Vec<(f64, Rgb8)>, Problem> {
    let gone = || Problem::new(Code::Expired, "the video is no longer stored");
    if !path.exists() {
        return Err(gone());
    }
    // What FFmpeg said goes to the log; the client gets our own words.
    let info = vsr_media::video::probe(path, limits).map_err(|e| {
        tracing::warn!(error = %e, "frame probe failed");
        Problem::new(e.code(), e.public_message())
    })?;
    vsr_media::video::decode::frames_at(path, &info, time, count).map_err(|e| {
        tracing::warn!(error = %e, "frame decode failed");
        Problem::new(e.code(), e.public_message())
    })
}

fn settings_from(v: Value) -> Result<Settings, Problem> {
    super::upload::parse_settings(Some(&v.to_string()))
}

fn not_draft(task: &Task) -> Problem {
    Problem::new(
        Code::NotDraft,
        format!(
            "task {} is {}; only a draft (uploaded with start=false) can be started",
            task.id,
            task.status.as_str()
        ),
    )
}

fn data_url(img: &Rgb8) -> String {
    use base64::Engine;
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png_bytes(img))
    )
}
