//! `GET /api/download/<id>`: the result, with resumable (Range) downloads. Who may download
//! is decided by `auth::authorize_download`: the task's key, or a signed link (`expires` +
//! `signature`, as `downloadUrl` gives) without one.

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::header;
use axum::response::Response;
use axum::Extension;
use tower::ServiceExt;
use tower_http::services::ServeFile;
use vsr_media::code::Code;

use crate::auth::{authorize_download, Link, Owner};
use crate::problem::Problem;
use crate::store::{Status, TaskId};
use crate::AppState;

pub async fn download(
    State(app): State<AppState>,
    Extension(owner): Extension<Owner>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Result<Response, Problem> {
    let link = Link::parse(query.as_deref())?;
    let task = match TaskId::parse(&id) {
        Some(task_id) => app.store.get(&task_id).await?,
        None => None,
    };
    authorize_download(
        &app.secret,
        &owner,
        &id,
        task.as_ref().map(|t| &t.owner),
        &link,
    )?;
    let task = task.ok_or_else(|| Problem::not_found(&id))?;
    match task.status {
        Status::Completed => {}
        Status::Expired => {
            return Err(Problem::new(
                Code::Expired,
                format!("the result of task {id} was deleted after the retention period"),
            ))
        }
        other => {
            return Err(Problem::new(
                Code::NotReady,
                format!(
                    "task {id} is {}; the video can be downloaded once it is completed",
                    other.as_str()
                ),
            ))
        }
    }
    // With an object store, this server serves its own copy (fetched once): ranges,
    // conditional requests and HEAD then work as for a local file.
    let Some(path) = app.files.fetch_output(&task).await? else {
        return Err(Problem::new(
            Code::Expired,
            format!("the result of task {id} is no longer stored"),
        ));
    };
    let ext = task.output_key.ext().to_string();
    let mime = if ext == "mkv" {
        "video/x-matroska"
    } else {
        "video/mp4"
    };
    // Ranges, conditional requests and HEAD are tower-http's `ServeFile`.
    let mime = mime.parse().expect("a valid mime type");
    let mut response = ServeFile::new_with_mime(&path, &mime)
        .oneshot(request)
        .await
        .map_err(Problem::internal)?
        .map(Body::new);
    let disposition = super::attachment(
        &task.input_name,
        "video",
        (task.output_size.0.into(), task.output_size.1.into()),
        &ext,
    );
    if let Ok(v) = disposition.parse() {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
