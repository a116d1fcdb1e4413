//! `POST /api/upload`: the video streams to disk (never whole in memory) while its bytes are
//! counted; then it is probed and the settings checked before a task is queued.

use std::path::{Path, PathBuf};

use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use tokio::io::AsyncWriteExt;

use super::view::task_view;
use crate::model_ref::ModelRef;
use crate::service::auth::Owner;
use crate::service::problem::Problem;
use crate::service::store::{now_ms, InputFacts, Status, Task};
use crate::service::AppState;
use crate::settings::Settings;
use crate::video::probe::VideoError;

/// Reads and drops the rest of a request answered before its body (a replay, a full queue, a
/// full disk), up to `max` bytes: clients that send the whole body before reading the answer
/// (browsers, reqwest) would otherwise see a reset connection instead of the answer.
async fn discard_body(multipart: &mut Multipart, max: u64) {
    let mut seen = 0u64;
    while let Ok(Some(mut field)) = multipart.next_field().await {
        while let Ok(Some(chunk)) = field.chunk().await {
            seen += chunk.len() as u64;
            if seen > max {
                return;
            }
        }
    }
}

/// Containers whose extension an upload keeps (the content decides what is accepted).
const KNOWN_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "ts", "flv", "ogv", "mpg", "mpeg", "mxf", "wmv",
];

pub async fn upload(
    State(app): State<AppState>,
    Extension(owner): Extension<Owner>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Result<(StatusCode, Json<serde_json::Value>), Problem> {
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let max = app.config.max_content_length;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max + 64 * 1024) {
        return Err(too_large(max));
    }
    if let Some(key) = &idempotency_key {
        if let Some(task) = app.store.find_idempotent(owner.0.as_deref(), key).await? {
            discard_body(&mut multipart, max).await;
            return Ok((StatusCode::ACCEPTED, Json(task_view(&app, &task))));
        }
    }
    if app.store.count_waiting().await? >= app.config.max_queued as i64 {
        discard_body(&mut multipart, max).await;
        return Err(Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "queue_full",
            format!(
                "{} tasks are already waiting; try again later",
                app.config.max_queued
            ),
        ));
    }
    let needed = declared.unwrap_or(max) + app.config.min_free_disk;
    if let Some(free) = free_bytes(&app.config.upload_folder) {
        if free < needed {
            discard_body(&mut multipart, max).await;
            return Err(Problem::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                format!(
                    "{} MiB free on the server, {} MiB needed",
                    free >> 20,
                    needed >> 20
                ),
            ));
        }
    }

    let id = uuid::Uuid::new_v4().to_string();
    let mut settings_text: Option<String> = None;
    let mut draft = false;
    let mut video: Option<(PathBuf, String)> = None;
    // Whatever happens below, a half-written upload does not stay behind.
    let mut guard = RemoveOnDrop(None);
    while let Some(mut field) = multipart.next_field().await.map_err(bad_multipart)? {
        match field.name().unwrap_or("") {
            "settings" => settings_text = Some(field.text().await.map_err(bad_multipart)?),
            // `start=false`: probe and keep the video, start later (after a preview).
            "start" => {
                draft = matches!(
                    field.text().await.map_err(bad_multipart)?.trim(),
                    "false" | "0" | "no"
                )
            }
            "video" | "file" => {
                let name = field.file_name().unwrap_or("video.mp4").to_string();
                let ext = Path::new(&name)
                    .extension()
                    .map(|e| e.to_string_lossy().to_ascii_lowercase())
                    .filter(|e| KNOWN_EXTENSIONS.contains(&e.as_str()))
                    .unwrap_or_else(|| "mp4".into());
                let path = app.config.upload_folder.join(format!("{id}.{ext}"));
                guard.0 = Some(path.clone());
                let mut file = tokio::fs::File::create(&path)
                    .await
                    .map_err(Problem::internal)?;
                let mut written = 0u64;
                while let Some(chunk) = field.chunk().await.map_err(bad_multipart)? {
                    written += chunk.len() as u64;
                    if written > max {
                        return Err(too_large(max));
                    }
                    file.write_all(&chunk).await.map_err(Problem::internal)?;
                }
                file.flush().await.map_err(Problem::internal)?;
                app.metrics
                    .upload_bytes
                    .fetch_add(written, std::sync::atomic::Ordering::Relaxed);
                video = Some((path, name));
            }
            _ => {} // unknown fields are ignored, as browsers add their own
        }
    }
    let (input_path, input_name) = video.ok_or_else(|| {
        Problem::bad_field(
            "missing_video",
            "video",
            "the form has no `video` file field",
        )
    })?;

    let settings = parse_settings(settings_text.as_deref())?;
    let limits = app.config.limits.clone();
    let probe_path = input_path.clone();
    let info = tokio::task::spawn_blocking(move || crate::video::probe(&probe_path, &limits))
        .await
        .map_err(Problem::internal)?
        .map_err(|e| unsupported(e, &input_path, &input_name))?;
    let v = &info.video;
    let input = InputFacts {
        width: v.width,
        height: v.height,
        fps: v.fps,
        frames: v.frames,
        duration: info.duration_s,
    };
    let checked = check_settings(&app, settings, &input)?;
    let ext = if input_path.extension().is_some_and(|e| e == "mkv") {
        "mkv"
    } else {
        "mp4"
    };
    let task = Task {
        id: id.clone(),
        owner: owner.0.clone(),
        status: if draft { Status::Draft } else { Status::Queued },
        stage: if draft { "draft" } else { "queued" }.into(),
        models: checked.models,
        notes: checked.notes,
        settings: checked.settings,
        input_name,
        input_path: input_path.clone(),
        output_path: app.config.processed_folder.join(format!("{id}.{ext}")),
        input,
        output_size: checked.output_size,
        current_frame: 0,
        total_frames: v.frames,
        fps: 0.0,
        eta_seconds: 0.0,
        error: None,
        created_at: now_ms(),
        started_at: None,
        finished_at: None,
        // A draft nobody starts is swept like a finished task.
        expires_at: draft.then(|| now_ms() + app.config.retention_seconds as i64 * 1000),
        output_bytes: None,
    };
    match app.store.insert(&task, idempotency_key.as_deref()).await {
        Ok(()) => {}
        // The same key raced in twice: answer with the task that won.
        Err(_) if idempotency_key.is_some() => {
            let key = idempotency_key.as_deref().unwrap_or_default();
            if let Some(existing) = app.store.find_idempotent(owner.0.as_deref(), key).await? {
                return Ok((StatusCode::ACCEPTED, Json(task_view(&app, &existing))));
            }
            return Err(Problem::internal("could not store the task"));
        }
        Err(e) => return Err(e.into()),
    }
    if !draft {
        app.queue.push(&id).await.map_err(Problem::internal)?;
    }
    guard.0 = None; // the task owns the upload now
    tracing::info!(task = %id, width = v.width, height = v.height, frames = v.frames, models = ?task.models, draft, "task created");
    Ok((StatusCode::ACCEPTED, Json(task_view(&app, &task))))
}

/// Settings that passed every check, with what they mean for this video.
pub struct Checked {
    pub settings: Settings,
    pub models: Vec<String>,
    pub notes: Vec<String>,
    pub output_size: (u32, u32),
}

/// Checks settings against the installed models and the output size limit for `input`.
pub fn check_settings(
    app: &AppState,
    settings: Settings,
    input: &InputFacts,
) -> Result<Checked, Problem> {
    let recipe = settings
        .recipe(&app.catalog, app.base.default_model.as_deref())
        .map_err(|e| Problem::bad_field(e.code(), e.field, e.reason))?;
    // Every pass's model must be installed; the scale of a custom model comes from its graph.
    let mut scale = 1u64;
    for pass in &recipe.passes {
        let model = ModelRef::resolve(Some(pass), &app.base, &app.catalog)
            .map_err(|e| Problem::bad_field("model_unavailable", "model", e.to_string()))?;
        scale *= match app.catalog.get(&model.name) {
            Some(m) => m.scale as u64,
            None => {
                model
                    .load()
                    .map_err(|e| Problem::bad_field("model_unavailable", "model", e.to_string()))?
                    .1
                    .scale as u64
            }
        };
    }
    if let Some(wanted) = recipe.scale.filter(|&s| s as u64 != scale) {
        return Err(Problem::bad_field(
            "invalid_settings",
            "scale",
            format!("the model upscales {scale}x, not {wanted}x"),
        ));
    }
    let (ow, oh) = (input.width as u64 * scale, input.height as u64 * scale);
    let (mw, mh) = app.config.max_output;
    if !((ow <= mw && oh <= mh) || (ow <= mh && oh <= mw)) {
        return Err(Problem::bad_field(
            "output_too_large",
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
        Problem::bad_field("invalid_settings", field, e.into_inner().to_string())
    })
}

/// The probe's verdict, naming the file as the client did rather than where it was stored.
fn unsupported(e: VideoError, stored: &Path, name: &str) -> Problem {
    let status = match e.code() {
        "over_limit" => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::UNSUPPORTED_MEDIA_TYPE,
    };
    // FFmpeg repeats the path in its own message; say the name once.
    let detail = e
        .to_string()
        .replace(&format!("file:{}: ", stored.display()), "")
        .replace(&stored.display().to_string(), name);
    Problem::new(status, e.code(), detail)
}

fn too_large(max: u64) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!(
            "uploads are limited to {} MB (MAX_CONTENT_LENGTH)",
            max / 1_000_000
        ),
    )
}

fn bad_multipart(e: axum::extract::multipart::MultipartError) -> Problem {
    Problem::new(e.status(), "bad_upload", e.body_text())
}

/// Free bytes on the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `s` a valid out-pointer for the call.
    (unsafe { libc::statvfs(c.as_ptr(), &mut s) } == 0)
        .then(|| s.f_bavail as u64 * s.f_frsize as u64)
}

struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}
