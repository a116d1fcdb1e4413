//! `POST /api/upload`: the video streams to disk (never whole in memory) while its bytes are
//! counted; then it is probed and the settings checked before a task is queued.
//!
//! The form is held to its shape: exactly one video part, small text parts, a bounded number
//! of parts, the whole body under `MAX_CONTENT_LENGTH` (chunked or not), no pause longer than
//! the body-idle timeout and all of it within the upload timeout. Whatever is refused or
//! fails, every byte written is removed before the answer.

use std::path::{Path, PathBuf};

use axum::extract::multipart::Field;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use tokio::io::AsyncWriteExt;
use vsr_media::catalog::Catalog;
use vsr_media::code::Code;
use vsr_media::config::Config;
use vsr_media::model_ref::ModelRef;
use vsr_media::settings::Settings;
use vsr_media::video::assemble::check_other_streams;
use vsr_media::video::probe::VideoError;
use vsr_media::video::PipelineError;

use super::form::{self, too_large, within, Form, FORM_OVERHEAD, MAX_SETTINGS_BYTES};
use super::view::{task_view, TaskView};
use crate::auth::Owner;
use crate::problem::Problem;
use crate::storage::Key;
use crate::store::{now_ms, InputFacts, Stage, Status, Task, TaskId};
use crate::AppState;

/// Containers whose extension an upload keeps (the content decides what is accepted).
const KNOWN_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "ts", "flv", "ogv", "mpg", "mpeg", "mxf", "wmv",
];

/// What the form carried, the video already on disk.
struct Received {
    settings_text: Option<String>,
    draft: bool,
    /// The video's key (received at its local file), and its name as the client gave it.
    video: (Key, String),
}

/// Longest `Idempotency-Key` (a UUID is 36 characters; Stripe allows 255).
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// Longest name of an upload kept (a file system's limit on one name).
const MAX_NAME_CHARS: usize = 255;

pub async fn upload(
    State(app): State<AppState>,
    Extension(owner): Extension<Owner>,
    request: Request,
) -> Result<(StatusCode, Json<TaskView>), Problem> {
    // Refused at once, body unread: a busy server does not spend time on more.
    let _slot = app
        .uploads
        .clone()
        .try_acquire_owned()
        .map_err(|_| Problem::busy("uploads"))?;
    let headers = request.headers().clone();
    let mut form = Form::of(request, &app.config.http).await?;
    let idempotency_key = match idempotency_key(&headers) {
        Ok(key) => key,
        Err(refusal) => return Err(form.refuse(refusal, &app.config.http).await),
    };
    let max = app.config.max_content_length;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max + FORM_OVERHEAD) {
        return Err(too_large(max));
    }
    if let Some(key) = &idempotency_key {
        if let Some(task) = app.store.find_idempotent(owner.fingerprint(), key).await? {
            // Read whole, to tell a retry from another upload under the same key.
            let replay = form.read(&app.config.http, replayed).await?;
            if !replay.matches(&task) {
                return Err(Problem::new(
                    Code::IdempotencyKeyReused,
                    format!(
                        "this Idempotency-Key was used for task {} with another video or other settings; use a new key for a new upload",
                        task.id
                    ),
                ));
            }
            return Ok((StatusCode::ACCEPTED, Json(task_view(&app, &task))));
        }
    }
    if let Err(full) = check_queue_room(&app).await {
        return Err(form.refuse(full, &app.config.http).await);
    }
    let needed = declared.unwrap_or(max) + app.config.min_free_disk;
    if let Some(free) = free_bytes(&app.config.upload_folder) {
        if free < needed {
            let full = Problem::new(
                Code::InsufficientStorage,
                format!(
                    "{} MiB free on the server, {} MiB needed",
                    free >> 20,
                    needed >> 20
                ),
            );
            return Err(form.refuse(full, &app.config.http).await);
        }
    }

    let id = TaskId::new();
    // Whatever happens below, a half-written or refused upload does not stay behind.
    let mut guard = RemoveOnDrop(None);
    let received = form
        .read(&app.config.http, async |form| {
            receive(&app, &id, form, &mut guard).await
        })
        .await?;
    let (input_key, input_name) = received.video;
    let input_path = app.files.upload_file(&input_key);
    let draft = received.draft;

    let settings = parse_settings(received.settings_text.as_deref())?;
    let limits = app.config.limits.clone();
    let probe_path = input_path.clone();
    let probe_slot = app.probe_slot().await?;
    let (info, fits_mp4) = tokio::task::spawn_blocking(move || {
        let info = vsr_media::video::probe(&probe_path, &limits)?;
        // Whether MP4 holds the source's other streams (PCM audio and picture subtitles it
        // does not): the result is MP4 where it can be, what every browser plays.
        let fits_mp4 = !matches!(
            check_other_streams(&probe_path, &info, Path::new("result.mp4")),
            Err(PipelineError::UnsupportedOutput { .. })
        );
        Ok::<_, VideoError>((info, fits_mp4))
    })
    .await
    .map_err(Problem::internal)?
    .map_err(|e| unsupported(e, &input_name))?;
    drop(probe_slot);
    let v = &info.video;
    let input = InputFacts {
        width: v.width,
        height: v.height,
        fps: v.fps,
        frames: v.frames,
        duration: info.duration_s,
    };
    let checked = check_settings(&app, settings, &input).await?;
    check_room_for_result(&app, info.size_bytes, &input, checked.output_size)?;
    // Matroska stays Matroska; anything else becomes MP4 unless its streams need Matroska.
    let ext = if input_key.ext() == "mkv" || !fits_mp4 {
        "mkv"
    } else {
        "mp4"
    };
    let status = if draft { Status::Draft } else { Status::Queued };
    let task = Task {
        id: id.clone(),
        owner: owner.fingerprint().map(str::to_string),
        status,
        stage: Stage::from(status),
        models: checked.models,
        notes: checked.notes,
        settings: checked.settings,
        input_name,
        input_key,
        output_key: Key::new(&id, ext),
        input,
        output_size: checked.output_size,
        current_frame: 0,
        resumed_frames: 0,
        upscaled_frames: 0,
        total_frames: v.frames,
        fps: 0.0,
        eta_seconds: 0.0,
        error: None,
        created_at: now_ms(),
        started_at: None,
        finished_at: None,
        // A draft nobody starts is swept like a finished task.
        expires_at: draft.then(|| app.config.expiry_from_now()),
        output_bytes: None,
    };
    // Stored before the row exists: a queued task's upload is where any worker finds it.
    app.files.store_input(&task).await?;
    let inserted = app.store.insert(&task, idempotency_key.as_deref()).await;
    if inserted.is_err() && !app.files.in_place() {
        app.files.remove_working(&task).await;
    }
    match inserted {
        Ok(()) => {}
        // The same key raced in twice: answer with the task that won.
        Err(_) if idempotency_key.is_some() => {
            let key = idempotency_key.as_deref().unwrap_or_default();
            if let Some(existing) = app.store.find_idempotent(owner.fingerprint(), key).await? {
                return Ok((StatusCode::ACCEPTED, Json(task_view(&app, &existing))));
            }
            return Err(Problem::internal("could not store the task"));
        }
        Err(e) => return Err(e.into()),
    }
    guard.0 = None; // the task owns the upload now
    tracing::info!(task = %id, width = v.width, height = v.height, frames = v.frames, models = ?task.models, draft, "task created");
    Ok((StatusCode::ACCEPTED, Json(task_view(&app, &task))))
}

/// Reads the form: the one video part streamed to `{id}.{ext}` in the upload folder (its path
/// kept in `guard` for removal on any failure), the text parts capped, unknown parts skipped.
async fn receive(
    app: &AppState,
    id: &TaskId,
    form: &mut Form,
    guard: &mut RemoveOnDrop,
) -> Result<Received, Problem> {
    let idle = form.idle;
    let max = app.config.max_content_length;
    let mut settings_text = None;
    let mut draft = false;
    let mut video = None;
    while let Some(mut field) = form.next_part().await? {
        match field.name().unwrap_or("") {
            "settings" => {
                settings_text = Some(form::text(&mut field, idle, MAX_SETTINGS_BYTES).await?)
            }
            // `start=false`: probe and keep the video, start later (after a preview).
            "start" => draft = !form::flag(&mut field, idle).await?,
            "video" | "file" => {
                if video.is_some() {
                    return Err(Problem::new(
                        Code::BadUpload,
                        "the form has more than one video part; send one video per upload",
                    ));
                }
                let name = client_name(&field, "video.mp4");
                let ext = Path::new(&name)
                    .extension()
                    .map(|e| e.to_string_lossy().to_ascii_lowercase())
                    .filter(|e| KNOWN_EXTENSIONS.contains(&e.as_str()))
                    .unwrap_or_else(|| "mp4".into());
                let key = Key::new(id, &ext);
                let path = app.files.upload_file(&key);
                guard.0 = Some(path.clone());
                let mut file = tokio::fs::File::create(&path)
                    .await
                    .map_err(Problem::internal)?;
                let mut written = 0u64;
                while let Some(chunk) = within(idle, field.chunk()).await? {
                    written += chunk.len() as u64;
                    if written > max {
                        return Err(too_large(max));
                    }
                    file.write_all(&chunk).await.map_err(Problem::internal)?;
                }
                file.flush().await.map_err(Problem::internal)?;
                app.metrics.count_upload(written);
                video = Some((key, name));
            }
            // Unknown parts are read past, never kept.
            _ => form::skip(&mut field, idle).await?,
        }
    }
    let video = video.ok_or_else(|| {
        Problem::bad_field(
            Code::MissingVideo,
            "video",
            "the form has no `video` file field",
        )
    })?;
    Ok(Received {
        settings_text,
        draft,
        video,
    })
}

/// The name the client gave a file part (`fallback` if none), cut to [`MAX_NAME_CHARS`]
/// characters: it is shown back and names the result's download.
pub fn client_name(field: &Field<'_>, fallback: &str) -> String {
    let name = field.file_name().filter(|n| !n.trim().is_empty());
    name.unwrap_or(fallback)
        .chars()
        .take(MAX_NAME_CHARS)
        .collect()
}

/// The request's `Idempotency-Key`, if it has one: printable ASCII, 1 to
/// [`MAX_IDEMPOTENCY_KEY`] characters, or the request is refused (an empty or mangled key
/// would otherwise fold unrelated uploads into one task, or be ignored unseen).
fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().map(str::trim).unwrap_or("");
    let valid = !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY
        && key.bytes().all(|b| b.is_ascii_graphic());
    if !valid {
        return Err(Problem::bad_field(
            Code::BadRequest,
            "Idempotency-Key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"),
        ));
    }
    Ok(Some(key.to_string()))
}

/// What a replayed upload (an `Idempotency-Key` already used) asks for: enough to tell a
/// retry of the same request from another upload under the same key.
struct Replay {
    settings: Result<Settings, Problem>,
    name: Option<String>,
}

impl Replay {
    /// The same video name and settings as the task the key made.
    fn matches(&self, task: &Task) -> bool {
        self.name.as_deref() == Some(task.input_name.as_str())
            && self.settings.as_ref().is_ok_and(|s| *s == task.settings)
    }
}

/// Reads a replayed upload's settings and video name, the video's bytes read past.
async fn replayed(form: &mut Form) -> Result<Replay, Problem> {
    let idle = form.idle;
    let (mut settings_text, mut name) = (None, None);
    while let Some(mut field) = form.next_part().await? {
        match field.name().unwrap_or("") {
            "settings" => {
                settings_text = Some(form::text(&mut field, idle, MAX_SETTINGS_BYTES).await?)
            }
            "video" | "file" => {
                name = Some(client_name(&field, "video.mp4"));
                form::skip(&mut field, idle).await?;
            }
            _ => form::skip(&mut field, idle).await?,
        }
    }
    Ok(Replay {
        settings: parse_settings(settings_text.as_deref()),
        name,
    })
}

/// Refuses another waiting task once `max_queued` wait (429 `queue_full`): new uploads and
/// drafts being started alike.
pub async fn check_queue_room(app: &AppState) -> Result<(), Problem> {
    if app.store.count_waiting().await? >= app.config.max_queued as i64 {
        return Err(Problem::new(
            Code::QueueFull,
            format!(
                "{} tasks are already waiting; try again later",
                app.config.max_queued
            ),
        ));
    }
    Ok(())
}

/// Settings that passed every check, with what they mean for this video.
pub struct Checked {
    pub settings: Settings,
    pub models: Vec<String>,
    pub notes: Vec<String>,
    pub output_size: (u32, u32),
}

/// Checks settings against the installed models and the output size limit for `input`.
/// Loading a custom model's graph (to learn its scale) is blocking work, so it runs off the
/// async threads.
pub async fn check_settings(
    app: &AppState,
    settings: Settings,
    input: &InputFacts,
) -> Result<Checked, Problem> {
    let (base, max_output, input) = (app.base.clone(), app.config.max_output, input.clone());
    tokio::task::spawn_blocking(move || check_settings_now(&base, max_output, settings, &input))
        .await
        .map_err(Problem::internal)?
}

fn check_settings_now(
    base: &Config,
    max_output: (u64, u64),
    settings: Settings,
    input: &InputFacts,
) -> Result<Checked, Problem> {
    let catalog = Catalog::builtin();
    // A model the client names is a catalog or installed one, never a path; the passes are
    // then that model, the presets' or the operator's default (`MODEL_PATH`).
    if let Some(name) = &settings.model {
        ModelRef::check_client_name(name, base, catalog)
            .map_err(|e| Problem::bad_field(Code::ModelUnavailable, "model", e.to_string()))?;
    }
    let recipe = settings
        .recipe(catalog, base.default_model.as_deref())
        .map_err(|e| Problem::bad_field(e.code(), e.field, e.reason))?;
    // Every pass's model must be installed; the scale of a custom model comes from its graph.
    let scale = vsr_media::enhance::recipe_scale(&recipe, base, catalog)
        .map_err(|(pass, e)| unavailable(&pass, e))? as u64;
    if let Some(wanted) = recipe.scale.filter(|&s| s as u64 != scale) {
        return Err(Problem::bad_field(
            Code::InvalidSettings,
            "scale",
            format!("the model upscales {scale}x, not {wanted}x"),
        ));
    }
    let (ow, oh) = (input.width as u64 * scale, input.height as u64 * scale);
    let (mw, mh) = max_output;
    if !((ow <= mw && oh <= mh) || (ow <= mh && oh <= mw)) {
        return Err(Problem::bad_field(
            Code::OutputTooLarge,
            "scale",
            format!(
                "{}x{} at {scale}x is {ow}x{oh}, over the {mw}x{mh} allowed",
                input.width, input.height
            ),
        ));
    }
    Ok(Checked {
        settings,
        models: recipe.passes,
        notes: recipe.notes,
        output_size: (ow as u32, oh as u32),
    })
}

/// A model that cannot be used, told without its files' paths or content (the log has them).
fn unavailable(pass: &str, e: vsr_media::model_ref::ModelRefError) -> Problem {
    use vsr_media::model_ref::ModelRefError;
    let detail = match &e {
        ModelRefError::NotInstalled(_) | ModelRefError::NotOffered(_) => e.to_string(),
        _ => {
            tracing::warn!(model = %pass, error = %e, "model cannot be loaded");
            "the model could not be loaded; the server log says why".to_string()
        }
    };
    Problem::bad_field(Code::ModelUnavailable, "model", detail)
}

/// The `settings` field: a JSON object (the seed sends it as a string); absent means defaults.
pub fn parse_settings(text: Option<&str>) -> Result<Settings, Problem> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return Ok(Settings::default());
    };
    // serde reads a struct from a JSON array too, by position: not a form anyone means.
    if !text.trim_start().starts_with('{') {
        return Err(Problem::bad_field(
            Code::InvalidSettings,
            "settings",
            "must be a JSON object, such as {\"scale\": 2}",
        ));
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "settings".to_string()
        } else {
            path
        };
        Problem::bad_field(Code::InvalidSettings, field, e.into_inner().to_string())
    })
}

/// The probe's verdict in our own words: no server path, nothing FFmpeg printed (that goes
/// to the log).
fn unsupported(e: VideoError, name: &str) -> Problem {
    tracing::info!(error = %e, "upload refused");
    let name: String = name.chars().take(100).collect();
    Problem::new(e.code(), format!("{name}: {}", e.public_message()))
}

/// Refuses a task whose result would not fit: it is written twice over while it is made (its
/// segments in the work directory, then the joined file), each about the upload's size
/// scaled by the growth in pixels.
fn check_room_for_result(
    app: &AppState,
    upload_bytes: u64,
    input: &InputFacts,
    (ow, oh): (u32, u32),
) -> Result<(), Problem> {
    let growth = (ow as f64 * oh as f64) / (input.width as f64 * input.height as f64).max(1.0);
    let result = (upload_bytes as f64 * growth) as u64;
    let needed = result.saturating_mul(2) + app.config.min_free_disk;
    match free_bytes(&app.config.processed_folder) {
        Some(free) if free < needed => Err(Problem::new(
            Code::InsufficientStorage,
            format!(
                "{} MiB free on the server, {} MiB needed for the result and its segments",
                free >> 20,
                needed >> 20
            ),
        )),
        _ => Ok(()),
    }
}

/// Free bytes on the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}
