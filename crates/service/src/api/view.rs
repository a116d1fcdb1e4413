//! How a task looks to API clients (camelCase, as in the seed): typed views whose schemas
//! (utoipa) the OpenAPI document carries.

use serde::Serialize;
use utoipa::ToSchema;
use vsr_media::settings::Settings;

use crate::auth::sign;
use crate::store::{InputFacts, Stage, Status, Task, TaskId};
use crate::AppState;

/// How long a signed download link stays valid.
const LINK_SECONDS: i64 = 3600;

fn iso(ms: Option<i64>) -> Option<String> {
    ms.map(|ms| {
        let secs = ms.div_euclid(1000);
        let nanos = (ms.rem_euclid(1000) * 1_000_000) as u32;
        let t = std::time::UNIX_EPOCH + std::time::Duration::new(secs as u64, nanos);
        humantime::format_rfc3339_millis(t).to_string()
    })
}

/// The download link: signed (usable without an API key) and expiring.
pub fn download_url(app: &AppState, task: &Task) -> Option<String> {
    if task.status != Status::Completed {
        return None;
    }
    let expires = crate::store::now_ms() / 1000 + LINK_SECONDS;
    let expires = task.expires_at.map_or(expires, |e| expires.min(e / 1000));
    let signature = sign(&app.secret, task.id.as_str(), expires);
    Some(format!(
        "/api/download/{}?expires={expires}&signature={signature}",
        task.id
    ))
}

/// Progress, as `/api/progress/<id>` and the `progress` events give it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProgressView {
    #[schema(value_type = String)]
    pub task_id: TaskId,
    pub status: Status,
    pub current_frame: u64,
    pub total_frames: u64,
    /// Percent, one decimal.
    pub progress: f64,
    pub fps: f64,
    pub eta_seconds: f64,
    pub stage: Stage,
    /// Frames taken from segments an interrupted attempt had finished (a resumed task).
    pub resumed_frames: u64,
    /// Frames upscaled over all attempts: above `totalFrames` by the work redone after
    /// interruptions (at most one segment each).
    pub upscaled_frames: u64,
}

pub fn progress_view(task: &Task) -> ProgressView {
    ProgressView {
        task_id: task.id.clone(),
        status: task.status,
        current_frame: task.current_frame,
        total_frames: task.total_frames,
        progress: (task.progress() * 10.0).round() / 10.0,
        fps: (task.fps * 100.0).round() / 100.0,
        eta_seconds: task.eta_seconds.round(),
        stage: task.stage,
        resumed_frames: task.resumed_frames,
        upscaled_frames: task.upscaled_frames,
    }
}

/// A task, as `/api/status/<id>`, uploads and lists give it (the seed's names, camelCase).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    #[schema(value_type = String)]
    pub task_id: TaskId,
    pub status: Status,
    /// Percent, one decimal.
    pub progress: f64,
    pub stage: Stage,
    /// Frames finished, those of earlier attempts included.
    pub current_frame: u64,
    pub total_frames: u64,
    /// Frames taken from segments an interrupted attempt had finished (a resumed task).
    pub resumed_frames: u64,
    /// Frames upscaled over all attempts.
    pub upscaled_frames: u64,
    pub status_url: String,
    pub progress_url: String,
    pub events_url: String,
    pub cancel_url: String,
    /// A signed link that needs no key, once the task is completed.
    pub download_url: Option<String>,
    pub error: Option<ErrorView>,
    pub settings: SettingsView,
    pub input_name: String,
    pub input: InputFacts,
    pub output: OutputView,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub expires_at: Option<String>,
}

/// Why a task failed: a stable code and our own words.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorView {
    pub code: String,
    pub message: String,
}

/// The settings asked for and what they mean: the models that run and a note on each choice.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SettingsView {
    #[schema(value_type = Object)]
    pub requested: Settings,
    pub models: Vec<String>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OutputView {
    pub width: u32,
    pub height: u32,
    /// Size of the result once there is one.
    pub bytes: Option<i64>,
}

pub fn task_view(app: &AppState, task: &Task) -> TaskView {
    let id = &task.id;
    TaskView {
        task_id: id.clone(),
        status: task.status,
        progress: (task.progress() * 10.0).round() / 10.0,
        stage: task.stage,
        current_frame: task.current_frame,
        total_frames: task.total_frames,
        resumed_frames: task.resumed_frames,
        upscaled_frames: task.upscaled_frames,
        status_url: format!("/api/status/{id}"),
        progress_url: format!("/api/progress/{id}"),
        events_url: format!("/api/events/{id}"),
        cancel_url: format!("/api/cancel/{id}"),
        download_url: download_url(app, task),
        error: task.error.as_ref().map(|e| ErrorView {
            code: e.code.as_str().to_string(),
            message: e.message.clone(),
        }),
        settings: SettingsView {
            requested: task.settings.clone(),
            models: task.models.clone(),
            notes: task.notes.clone(),
        },
        input_name: task.input_name.clone(),
        input: task.input.clone(),
        output: OutputView {
            width: task.output_size.0,
            height: task.output_size.1,
            bytes: task.output_bytes,
        },
        created_at: iso(Some(task.created_at)),
        started_at: iso(task.started_at),
        finished_at: iso(task.finished_at),
        expires_at: iso(task.expires_at),
    }
}

/// A page of tasks, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskList {
    pub tasks: Vec<TaskView>,
    pub page: i64,
    pub per_page: i64,
    pub total: i64,
}
