//! `GET /api/download/<id>`: the result, with resumable (Range) downloads. Who may download
//! is decided by `auth::authorize_download`: the task's key, or a signed link (`expires` +
//! `signature`, as `downloadUrl` gives) without one.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
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
    headers: HeaderMap,
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
    let mut file = tokio::fs::File::open(&task.output_path)
        .await
        .map_err(|_| {
            Problem::new(
                Code::Expired,
                format!("the result of task {id} is no longer stored"),
            )
        })?;
    let size = file.metadata().await.map_err(Problem::internal)?.len();
    let ext = task
        .output_path
        .extension()
        .map_or("mp4".into(), |e| e.to_string_lossy().into_owned());
    let stem = std::path::Path::new(&task.input_name)
        .file_stem()
        .map_or("video".into(), |s| s.to_string_lossy().into_owned());
    // Only characters that need no quoting: the name is ours, the upload's name is not.
    let stem: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = format!("{stem}_{}x{}.{ext}", task.output_size.0, task.output_size.1);
    let mime = if ext == "mkv" {
        "video/x-matroska"
    } else {
        "video/mp4"
    };

    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|r| parse_range(r, size));
    let (status, start, len) = match range {
        None => (StatusCode::OK, 0, size),
        Some(Some((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Some(None) => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
            )
                .into_response())
        }
    };
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(Problem::internal)?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file.take(len)));
    let mut response = (
        status,
        [
            (header::CONTENT_TYPE, mime.to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (header::ACCEPT_RANGES, "bytes".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response();
    if status == StatusCode::PARTIAL_CONTENT {
        response.headers_mut().insert(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", start + len - 1)
                .parse()
                .expect("ascii"),
        );
    }
    Ok(response)
}

/// One `bytes=` range as inclusive (start, end), or `None` if it cannot be satisfied.
fn parse_range(header: &str, size: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None; // several ranges: not supported, the client falls back to the whole file
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            (size.saturating_sub(n), size - 1)
        }
        (a, "") => (a.parse().ok()?, size - 1),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(size - 1)),
    };
    (start <= end && start < size).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some((0, 99)));
        assert_eq!(parse_range("bytes=900-", 1000), Some((900, 999)));
        assert_eq!(parse_range("bytes=-100", 1000), Some((900, 999)));
        assert_eq!(parse_range("bytes=990-2000", 1000), Some((990, 999)));
        assert_eq!(parse_range("bytes=1000-", 1000), None);
        assert_eq!(parse_range("bytes=5-1", 1000), None);
        assert_eq!(parse_range("items=0-1", 1000), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), None);
    }
}
