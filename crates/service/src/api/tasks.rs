//! Following and controlling tasks: status, progress, live events, cancel, delete, list.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::{Extension, Json};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use vsr_media::code::Code;

use super::view::{progress_view, task_view, ProgressView, TaskList, TaskView};
use crate::auth::Owner;
use crate::problem::Problem;
use crate::store::{Outcome, Status, Task, TaskId};
use crate::AppState;

/// How often live views look at the database; progress reaches clients within this.
const POLL: Duration = Duration::from_millis(250);

/// The task if `id` names one and the caller may see it.
pub async fn visible(app: &AppState, owner: &Owner, id: &str) -> Result<Task, Problem> {
    let found = match TaskId::parse(id) {
        Some(id) => app.store.get(&id).await?,
        None => None,
    };
    match found {
        Some(t) if owner.may_see(&t.owner) => Ok(t),
        _ => Err(Problem::not_found(id)),
    }
}

/// How long cancel and delete wait for a running task's worker to confirm it stopped.
const STOP_WAIT: Duration = Duration::from_secs(3);

/// Asks a task that has not ended to stop, ends it at once if no worker has it, and waits
/// until it has ended (or [`STOP_WAIT`] passed): the one stopping path, for cancel and delete.
async fn stop(app: &AppState, task: &Task) -> Result<Task, Problem> {
    app.store.request_cancel(&task.id).await?;
    // Ended at once if no worker has it; a worker that claimed it meanwhile sees the request.
    let outcome = Outcome {
        status: Status::Cancelled,
        error: None,
        expires_at: app.config.expiry_from_now(),
        output_bytes: None,
        notes: None,
    };
    app.store.cancel_waiting(&task.id, &outcome).await?;
    // The worker notices within its reporting interval.
    let deadline = tokio::time::Instant::now() + STOP_WAIT;
    loop {
        let now = app
            .store
            .get(&task.id)
            .await?
            .ok_or_else(|| Problem::not_found(task.id.as_str()))?;
        if now.status.is_terminal() || tokio::time::Instant::now() > deadline {
            return Ok(now);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn status(
    State(app): State<AppState>,
    Extension(owner): Extension<Owner>,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, Problem> {
    let task = visible(&app, &owner, &id).await?;
    Ok(Json(task_view(&app, &task)))
}

pub async fn progress(
    State(app): State<AppState>,
    Extension(owner): Extension<Owner>,
    Path(id): Path<String>,
) -> Result<Json<ProgressView>, Problem> {
    let task = visible(&app, &owner, &id).await?;
    Ok(Json(progress_view(&task)))
}

/// Server-Sent Events: a `progress` event whenever progress changes, then one `done` event
/// with the final status, then the stream ends.
pub async fn events(
    State(app): State<AppState>,
    Extension(owner): Extension<Owner>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    let id = visible(&app, &owner, &id).await?.id;
    let state = (app, id, None::<ProgressView>, false);
    let stream = stream::unfold(state, |(app, id, last, finished)| async move {
        if finished {
            return None;
        }
        loop {
            let task = match app.store.get(&id).await {
                Ok(Some(t)) => t,
                _ => {
                    let gone = Event::default()
                        .event("done")
                        .data(serde_json::json!({"taskId": id, "status": "deleted"}).to_string());
                    return Some((Ok(gone), (app, id, last, true)));
                }
            };
            if task.status.is_terminal() {
                let done = Event::default()
                    .event("done")
                    .data(json(&task_view(&app, &task)));
                return Some((Ok(done), (app, id, last, true)));
            }
            let view = progress_view(&task);
            if last.as_ref() != Some(&view) {
                let event = Event::default().event("progress").data(json(&view));
                return Some((Ok(event), (app, id, Some(view), false)));
            }
            tokio::time::sleep(POLL).await;
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn json(view: &impl serde::Serialize) -> String {
    serde_json::to_string(view).expect("views serialise")
}

/// Stops a queued or running task within a second; repeating it is harmless.
pub async fn cancel(
    State(app): State<AppState>,
    Extension(owner): Extension<Owner>,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, Problem> {
    let task = visible(&app, &owner, &id).await?;
    match task.status {
        Status::Cancelled => return Ok(Json(task_view(&app, &task))),
        Status::Completed | Status::Failed | Status::Expired => {
            return Err(Problem::new(
                Code::TaskFinished,
                format!(
                    "task {id} is already {}; nothing to cancel",
                    task.status.as_str()
                ),
            ))
        }
        Status::Draft | Status::Queued | Status::Processing => {}
    }
    let now = stop(&app, &task).await?;
    if now.status.is_terminal() {
        app.files.remove_working(&now).await;
    }
    Ok(Json(task_view(&app, &now)))
}

/// Removes a task and its files now (cancelling it first if it runs).
pub async fn delete(
    State(app): State<AppState>,
    Extension(owner): Extension<Owner>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let task = visible(&app, &owner, &id).await?;
    if !task.status.is_terminal() {
        stop(&app, &task).await?;
    }
    app.store.delete(&task.id).await?;
    app.files.remove_all(&task).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    page: Option<i64>,
    per_page: Option<i64>,
}

pub async fn list(
    State(app): State<AppState>,
    Extension(owner): Extension<Owner>,
    Query(page): Query<Page>,
) -> Result<Json<TaskList>, Problem> {
    let per_page = page.per_page.unwrap_or(20).clamp(1, 100);
    // Bounded so that the offset below cannot overflow.
    let number = page.page.unwrap_or(1).clamp(1, i64::MAX / 100);
    let (tasks, total) = app
        .store
        .list(owner.fingerprint(), (number - 1) * per_page, per_page)
        .await?;
    Ok(Json(TaskList {
        tasks: tasks.iter().map(|t| task_view(&app, t)).collect(),
        page: number,
        per_page,
        total,
    }))
}
