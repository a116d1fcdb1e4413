//! How a task looks to API clients (camelCase, as in the seed).

use serde_json::{json, Value};

use crate::auth::sign;
use crate::store::{Status, Task};
use crate::AppState;

/// How long a signed download link stays valid.
const LINK_SECONDS: i64 = 3600;

fn iso(ms: Option<i64>) -> Value {
    ms.map(|ms| {
        let secs = ms.div_euclid(1000);
        let nanos = (ms.rem_euclid(1000) * 1_000_000) as u32;
        let t = std::time::UNIX_EPOCH + std::time::Duration::new(secs as u64, nanos);
        humantime::format_rfc3339_millis(t).to_string()
    })
    .map_or(Value::Null, Value::String)
}

/// The download link: signed (usable without an API key) and expiring.
pub fn download_url(app: &AppState, task: &Task) -> Value {
    if task.status != Status::Completed {
        return Value::Null;
    }
    let expires = crate::store::now_ms() / 1000 + LINK_SECONDS;
    let expires = task.expires_at.map_or(expires, |e| expires.min(e / 1000));
    let signature = sign(&app.secret, task.id.as_str(), expires);
    Value::String(format!(
        "/api/download/{}?expires={expires}&signature={signature}",
        task.id
    ))
}

pub fn progress_view(task: &Task) -> Value {
    json!({
        "taskId": task.id,
        "status": task.status,
        "currentFrame": task.current_frame,
        "totalFrames": task.total_frames,
        "progress": (task.progress() * 10.0).round() / 10.0,
        "fps": (task.fps * 100.0).round() / 100.0,
        "etaSeconds": task.eta_seconds.round(),
        "stage": task.stage,
    })
}

pub fn task_view(app: &AppState, task: &Task) -> Value {
    let id = &task.id;
    json!({
        "taskId": id,
        "status": task.status,
        "progress": (task.progress() * 10.0).round() / 10.0,
        "stage": task.stage,
        "statusUrl": format!("/api/status/{id}"),
        "progressUrl": format!("/api/progress/{id}"),
        "eventsUrl": format!("/api/events/{id}"),
        "cancelUrl": format!("/api/cancel/{id}"),
        "downloadUrl": download_url(app, task),
        "error": task.error,
        "settings": {
            "requested": task.settings,
            "models": task.models,
            "notes": task.notes,
        },
        "inputName": task.input_name,
        "input": task.input,
        "output": {"width": task.output_size.0, "height": task.output_size.1, "bytes": task.output_bytes},
        "createdAt": iso(Some(task.created_at)),
        "startedAt": iso(task.started_at),
        "finishedAt": iso(task.finished_at),
        "expiresAt": iso(task.expires_at),
    })
}
