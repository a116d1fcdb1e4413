//! A task row read back, whatever the backend: the columns are the same in every schema, so
//! one function decodes them for all (sqlx's `Row` over any database whose types decode).

use std::str::FromStr;

use serde::Serialize;
use sqlx::{ColumnIndex, Decode, Row, Type};
use vsr_media::code::Code;

use super::{Status, StoreError, Task, TaskError, TaskId, WorkerId, WorkerInfo};
use crate::storage::Key;

/// A value as the JSON text stored in its column.
pub(super) fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serialises")
}

pub(super) fn parse_id(id: &str) -> Result<TaskId, StoreError> {
    TaskId::parse(id).ok_or_else(|| StoreError::Corrupt(id.to_string(), "not a task id".into()))
}

/// Tasks with the worker holding each, as `(id, worker_pid)` pairs read back.
pub(super) fn held(rows: &[(String, i64)]) -> Result<Vec<(TaskId, WorkerId)>, StoreError> {
    rows.iter()
        .map(|(id, holder)| Ok((parse_id(id)?, WorkerId::from_raw(*holder))))
        .collect()
}

/// Reads a task row of `tasks`.
pub(super) fn task<'r, R>(r: &'r R) -> Result<Task, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    f64: Decode<'r, R::Database> + Type<R::Database>,
{
    let text = |col: &'static str| -> Result<String, StoreError> {
        r.try_get::<String, _>(col)
            .map_err(|e| StoreError::Corrupt("(row)".into(), format!("{col}: {e}")))
    };
    let int = |col: &'static str| r.try_get::<i64, _>(col).map_err(StoreError::Db);
    let maybe_int = |col: &'static str| r.try_get::<Option<i64>, _>(col).map_err(StoreError::Db);
    let id = text("id")?;
    let corrupt = |col: &str, e: String| StoreError::Corrupt(id.clone(), format!("{col}: {e}"));
    let parsed = |col: &'static str| -> Result<String, StoreError> { text(col) };
    let error = match r.try_get::<Option<String>, _>("error_code")? {
        None => None,
        Some(code) => Some(TaskError {
            code: Code::parse(&code)
                .ok_or_else(|| corrupt("error_code", format!("unknown value {code:?}")))?,
            message: r
                .try_get::<Option<String>, _>("error_message")?
                .unwrap_or_default(),
        }),
    };
    fn decode<T: FromStr>(text: String) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        text.parse().map_err(|e: T::Err| e.to_string())
    }
    fn key(text: String) -> Result<Key, String> {
        Key::from_stored(&text).ok_or_else(|| format!("{text:?} names no file of ours"))
    }
    fn from_json<T: serde::de::DeserializeOwned>(text: String) -> Result<T, String> {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }
    Ok(Task {
        owner: r.try_get("owner")?,
        status: decode(parsed("status")?).map_err(|e| corrupt("status", e))?,
        stage: decode(parsed("stage")?).map_err(|e| corrupt("stage", e))?,
        settings: from_json(text("settings")?).map_err(|e| corrupt("settings", e))?,
        models: from_json(text("models")?).map_err(|e| corrupt("models", e))?,
        notes: from_json(text("notes")?).map_err(|e| corrupt("notes", e))?,
        input_name: text("input_name")?,
        input_key: key(text("input_key")?).map_err(|e| corrupt("input_key", e))?,
        output_key: key(text("output_key")?).map_err(|e| corrupt("output_key", e))?,
        input: from_json(text("input")?).map_err(|e| corrupt("input", e))?,
        output_size: (int("out_width")? as u32, int("out_height")? as u32),
        current_frame: int("current_frame")? as u64,
        total_frames: int("total_frames")? as u64,
        resumed_frames: int("resumed_frames")? as u64,
        upscaled_frames: int("upscaled_frames")? as u64,
        fps: r.try_get("fps")?,
        eta_seconds: r.try_get("eta_seconds")?,
        error,
        created_at: int("created_at")?,
        started_at: maybe_int("started_at")?,
        finished_at: maybe_int("finished_at")?,
        expires_at: maybe_int("expires_at")?,
        output_bytes: maybe_int("output_bytes")?,
        id: parse_id(&id)?,
    })
}

/// Reads a row of `workers`.
pub(super) fn worker<'r, R>(r: &'r R) -> Result<WorkerInfo, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let task: Option<String> = r.try_get("task_id")?;
    Ok(WorkerInfo {
        id: WorkerId(r.try_get("id")?),
        host: r.try_get("host")?,
        pid: r.try_get("pid")?,
        device: r.try_get("device")?,
        standalone: r.try_get::<i64, _>("standalone")? != 0,
        task: task.as_deref().map(parse_id).transpose()?,
        started_at: r.try_get("started_at")?,
        seen_at: r.try_get("seen_at")?,
    })
}

/// `(status, count)` rows, typed.
pub(super) fn status_counts(rows: Vec<(String, i64)>) -> Result<Vec<(Status, i64)>, StoreError> {
    rows.into_iter()
        .map(|(status, n)| {
            let status = status
                .parse()
                .map_err(|e| StoreError::Corrupt("(count)".into(), format!("status: {e}")))?;
            Ok((status, n))
        })
        .collect()
}

/// The keys in `(input_key, output_key)` rows (older rows hold paths: their file names).
pub(super) fn file_names(rows: Vec<(String, String)>) -> std::collections::HashSet<String> {
    let name = |p: &str| Key::from_stored(p).map(|k| k.as_str().to_string());
    rows.iter()
        .flat_map(|(input, output)| [name(input), name(output)])
        .flatten()
        .collect()
}
