//! `POST /api/upload`: the video streams to disk (never whole in memory) while its bytes are
//! counted; then it is probed and the settings checked before a task is queued.
//!
//! The form is held to its shape: exactly one video part, small text parts, a bounded number
//! of parts, the whole body under `MAX_CONTENT_LENGTH` (chunked or not), no pause longer than
//! the body-idle timeout and all of it within the upload timeout. Whatever is refused or
//! fails, every byte written is removed before the answer.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::multipart::Field;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use vsr_media::catalog::Catalog;
use vsr_media::code::Code;
use vsr_media::config::Config;
use vsr_media::model_ref::ModelRef;
use vsr_media::settings::Settings;
use vsr_media::video::probe::VideoError;

use super::view::{task_view, TaskView};
use crate::auth::Owner;
use crate::config::HttpLimits;
use crate::problem::Problem;
use crate::storage::Key;
use crate::store::{now_ms, InputFacts, Stage, Status, Task, TaskId};
use crate::AppState;

/// Room in the whole body for the form's boundaries, headers and text parts.
pub const FORM_OVERHEAD: u64 = 64 * 1024;
/// Largest `settings` part: a JSON object of a dozen fields is a few hundred bytes.
const MAX_SETTINGS_BYTES: usize = 16 * 1024;
/// Largest `start` part (`true`/`false`).
const MAX_FLAG_BYTES: usize = 16;
/// Parts in one form; browsers add none of their own to ours.
const MAX_PARTS: usize = 16;

/// Reads and drops the rest of a request answered before its body (a replay, a full queue, a
/// full disk), within the upload's timeouts (the whole-body limit bounds its size): clients
/// that send the whole body before reading the answer (browsers, reqwest) would otherwise
/// see a reset connection instead of the answer.
async fn discard_body(multipart: &mut Multipart, limits: &HttpLimits) {
    let idle = limits.body_idle_timeout();
    let drain = async {
        while let Ok(Some(mut field)) = within(idle, multipart.next_field()).await {
            while let Ok(Some(_)) = within(idle, field.chunk()).await {}
        }
    };
    let _ = tokio::time::timeout(limits.upload_timeout(), drain).await;
}

/// Containers whose extension an upload keeps (the content decides what is accepted).
const KNOWN_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "ts", "flv", "ogv", "mpg", "mpeg", "mxf", "wmv",
];

/// What the form carried, the video already on disk.
struct Form {
    settings_text: Option<String>,
    draft: bool,
    /// The video's key (received at its local file), and its name as the client gave it.
    video: (Key, String),
}

/// Longest stretch of body a part's headers may take (they are a few hundred bytes; the
/// rest is slack for the chunk they arrive in). The form parser keeps a part's headers whole
/// until they end, so without this a client could make it hold `MAX_CONTENT_LENGTH`.
const MAX_PART_HEAD_BYTES: u64 = 1 << 20;

/// How many bytes the client may still send before the headers of the part being read end;
/// `u64::MAX` while a part's content is read (the whole-body limit bounds that).
struct HeadBudget {
    remaining: AtomicU64,
    /// Set when the budget ran out, so the parser's error can be told as what it is.
    exceeded: AtomicBool,
}

impl HeadBudget {
    fn set(&self, bytes: u64) {
        self.remaining.store(bytes, Ordering::Relaxed);
    }

    /// Counts `n` bytes of body; false once the budget is gone.
    fn spend(&self, n: u64) -> bool {
        let left = self.remaining.load(Ordering::Relaxed);
        if left == u64::MAX {
            return true;
        }
        self.remaining
            .store(left.saturating_sub(n), Ordering::Relaxed);
        let ok = n <= left;
        if !ok {
            self.exceeded.store(true, Ordering::Relaxed);
        }
        ok
    }
}

/// The request's form, its body counted against `budget`.
async fn form_of(request: Request, budget: Arc<HeadBudget>) -> Result<Multipart, Problem> {
    let (parts, body) = request.into_parts();
    let counted = body.into_data_stream().map(move |chunk| {
        let chunk = chunk?;
        if budget.spend(chunk.len() as u64) {
            Ok(chunk)
        } else {
            Err(axum::Error::new("a part's headers are too long"))
        }
    });
    let request = Request::from_parts(parts, Body::from_stream(counted));
    Multipart::from_request(request, &())
        .await
        .map_err(|e| Problem {
            status: e.status(),
            ..Problem::new(Code::BadUpload, e.body_text())
        })
}

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
    let budget = Arc::new(HeadBudget {
        remaining: AtomicU64::new(MAX_PART_HEAD_BYTES),
        exceeded: AtomicBool::new(false),
    });
    let mut multipart = form_of(request, budget.clone()).await?;
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let max = app.config.max_content_length;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max + FORM_OVERHEAD) {
        return Err(too_large(max));
    }
    let deadline = app.config.http.upload_timeout();
    if let Some(key) = &idempotency_key {
        if let Some(task) = app.store.find_idempotent(owner.fingerprint(), key).await? {
            discard_body(&mut multipart, &app.config.http).await;
            return Ok((StatusCode::ACCEPTED, Json(task_view(&app, &task))));
        }
    }
    if app.store.count_waiting().await? >= app.config.max_queued as i64 {
        let full = Problem::new(
            Code::QueueFull,
            format!(
                "{} tasks are already waiting; try again later",
                app.config.max_queued
            ),
        );
        discard_body(&mut multipart, &app.config.http).await;
        return Err(full);
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
            discard_body(&mut multipart, &app.config.http).await;
            return Err(full);
        }
    }

    let id = TaskId::new();
    // Whatever happens below, a half-written or refused upload does not stay behind.
    let mut guard = RemoveOnDrop(None);
    let receiving = receive(&app, &id, &mut multipart, &budget, &mut guard);
    let form = tokio::time::timeout(deadline, receiving)
        .await
        .map_err(|_| {
            Problem::new(
                Code::UploadTimeout,
                format!("the upload did not arrive within {} s", deadline.as_secs()),
            )
        })??;
    let (input_key, input_name) = form.video;
    let input_path = app.files.upload_file(&input_key);
    let draft = form.draft;

    let settings = parse_settings(form.settings_text.as_deref())?;
    let limits = app.config.limits.clone();
    let probe_path = input_path.clone();
    let probe_slot = app.probe_slot().await?;
    let info = tokio::task::spawn_blocking(move || vsr_media::video::probe(&probe_path, &limits))
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
    let ext = if input_key.ext() == "mkv" {
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
    multipart: &mut Multipart,
    budget: &HeadBudget,
    guard: &mut RemoveOnDrop,
) -> Result<Form, Problem> {
    let idle = app.config.http.body_idle_timeout();
    let max = app.config.max_content_length;
    let mut settings_text = None;
    let mut draft = false;
    let mut video = None;
    let mut parts = 0;
    loop {
        budget.set(MAX_PART_HEAD_BYTES);
        let next = within(idle, multipart.next_field()).await;
        if budget.exceeded.load(Ordering::Relaxed) {
            return Err(Problem::new(
                Code::TooLarge,
                format!("a part's headers are limited to {MAX_PART_HEAD_BYTES} bytes"),
            ));
        }
        let Some(mut field) = next? else { break };
        budget.set(u64::MAX);
        parts += 1;
        if parts > MAX_PARTS {
            return Err(bad_form(format!(
                "the form has more than {MAX_PARTS} parts"
            )));
        }
        match field.name().unwrap_or("") {
            "settings" => {
                settings_text = Some(small_text(&mut field, idle, MAX_SETTINGS_BYTES).await?)
            }
            // `start=false`: probe and keep the video, start later (after a preview).
            "start" => {
                let text = small_text(&mut field, idle, MAX_FLAG_BYTES).await?;
                draft = matches!(text.trim(), "false" | "0" | "no");
            }
            "video" | "file" => {
                if video.is_some() {
                    return Err(bad_form(
                        "the form has more than one video part; send one video per upload".into(),
                    ));
                }
                let name = field.file_name().unwrap_or("video.mp4").to_string();
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
            // Unknown parts are read past, never kept; the whole-body limit bounds them.
            _ => while within(idle, field.chunk()).await?.is_some() {},
        }
    }
    let video = video.ok_or_else(|| {
        Problem::bad_field(
            Code::MissingVideo,
            "video",
            "the form has no `video` file field",
        )
    })?;
    Ok(Form {
        settings_text,
        draft,
        video,
    })
}

/// One step of reading the form, failed with 408 if the client pauses longer than `idle`.
async fn within<T>(
    idle: Duration,
    step: impl std::future::Future<Output = Result<T, axum::extract::multipart::MultipartError>>,
) -> Result<T, Problem> {
    match tokio::time::timeout(idle, step).await {
        Ok(result) => result.map_err(bad_multipart),
        Err(_) => Err(Problem::new(
            Code::UploadStalled,
            format!("the upload paused for more than {} s", idle.as_secs()),
        )),
    }
}

/// A text part, refused with 413 past `cap` bytes instead of being read whole.
async fn small_text(field: &mut Field<'_>, idle: Duration, cap: usize) -> Result<String, Problem> {
    let name = field.name().unwrap_or("").to_string();
    let mut bytes = Vec::new();
    while let Some(chunk) = within(idle, field.chunk()).await? {
        if bytes.len() + chunk.len() > cap {
            return Err(Problem {
                field: Some(name.clone()),
                ..Problem::new(
                    Code::TooLarge,
                    format!("the `{name}` part is limited to {cap} bytes"),
                )
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| {
        Problem::bad_field(Code::BadUpload, name.clone(), "the part is not UTF-8 text")
    })
}

fn bad_form(detail: String) -> Problem {
    Problem::new(Code::BadUpload, detail)
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

fn too_large(max: u64) -> Problem {
    Problem::new(
        Code::TooLarge,
        format!(
            "uploads are limited to {} MB (MAX_CONTENT_LENGTH)",
            max / 1_000_000
        ),
    )
}

fn bad_multipart(e: axum::extract::multipart::MultipartError) -> Problem {
    match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Problem::new(
            Code::TooLarge,
            "the request is larger than MAX_CONTENT_LENGTH allows",
        ),
        status => Problem {
            status,
            ..Problem::new(Code::BadUpload, e.body_text())
        },
    }
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
