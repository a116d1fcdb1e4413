//! The embedded backend: tasks in a SQLite file (WAL, so the server and its worker processes
//! share it), the schema from versioned migrations in `migrations/sqlite`. Statuses are bound
//! as parameters from [`Status`], never written as literals in the SQL.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
};
use sqlx::Row;
use vsr_media::code::Code;

use super::{
    now_ms, Outcome, Report, Stage, Status, StoreError, Task, TaskError, TaskId, TaskStore,
};

/// The migrations, compiled in.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Tasks in one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database and brings its schema up to date; safe for
    /// several processes at once.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    async fn one<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> Result<Option<Task>, StoreError> {
        query
            .fetch_optional(&self.pool)
            .await?
            .map(|r| from_row(&r))
            .transpose()
    }

    async fn ids<'q>(
        &self,
        query: sqlx::query::QueryScalar<
            'q,
            sqlx::Sqlite,
            String,
            sqlx::sqlite::SqliteArguments<'q>,
        >,
    ) -> Result<Vec<TaskId>, StoreError> {
        let ids: Vec<String> = query.fetch_all(&self.pool).await?;
        ids.iter().map(|id| parse_id(id)).collect()
    }
}

#[async_trait::async_trait]
impl TaskStore for SqliteStore {
    async fn insert(&self, t: &Task, idempotency_key: Option<&str>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tasks (id, owner, idempotency_key, status, stage, settings, models, notes,
             input_name, input_path, output_path, input, out_width, out_height, total_frames, created_at,
             expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(t.id.as_str())
        .bind(&t.owner)
        .bind(idempotency_key)
        .bind(t.status.as_str())
        .bind(t.stage.as_str())
        .bind(json(&t.settings))
        .bind(json(&t.models))
        .bind(json(&t.notes))
        .bind(&t.input_name)
        .bind(t.input_path.to_string_lossy())
        .bind(t.output_path.to_string_lossy())
        .bind(json(&t.input))
        .bind(t.output_size.0)
        .bind(t.output_size.1)
        .bind(t.total_frames as i64)
        .bind(t.created_at)
        .bind(t.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        self.one(sqlx::query("SELECT * FROM tasks WHERE id = ?").bind(id.as_str()))
            .await
    }

    async fn find_idempotent(
        &self,
        owner: Option<&str>,
        key: &str,
    ) -> Result<Option<Task>, StoreError> {
        self.one(
            sqlx::query("SELECT * FROM tasks WHERE owner IS ? AND idempotency_key = ?")
                .bind(owner)
                .bind(key),
        )
        .await
    }

    async fn list(
        &self,
        owner: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<Task>, i64), StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM tasks WHERE (? IS NULL OR owner = ?) ORDER BY created_at DESC LIMIT ? OFFSET ?",
        )
        .bind(owner)
        .bind(owner)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE (? IS NULL OR owner = ?)")
                .bind(owner)
                .bind(owner)
                .fetch_one(&self.pool)
                .await?;
        Ok((rows.iter().map(from_row).collect::<Result<_, _>>()?, total))
    }

    async fn count_by_status(&self) -> Result<Vec<(Status, i64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM tasks GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let status: &str = r.get("status");
                let status = status
                    .parse()
                    .map_err(|e| StoreError::Corrupt("(count)".into(), format!("status: {e}")))?;
                Ok((status, r.get("n")))
            })
            .collect()
    }

    async fn count_waiting(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE status = ?")
                .bind(Status::Queued.as_str())
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn claim_next(&self, pid: u32) -> Result<Option<Task>, StoreError> {
        // One statement: SQLite runs writers one at a time, so two workers never get the same.
        self.one(
            sqlx::query(
                "UPDATE tasks SET status = ?, stage = ?, started_at = ?, worker_pid = ?
                 WHERE id = (SELECT id FROM tasks WHERE status = ? ORDER BY created_at, id LIMIT 1)
                 AND status = ? RETURNING *",
            )
            .bind(Status::Processing.as_str())
            .bind(Stage::Starting.as_str())
            .bind(now_ms())
            .bind(pid as i64)
            .bind(Status::Queued.as_str())
            .bind(Status::Queued.as_str()),
        )
        .await
    }

    async fn progress(&self, id: &TaskId, r: &Report) -> Result<bool, StoreError> {
        let cancel: Option<i64> = sqlx::query_scalar(
            "UPDATE tasks SET stage = ?, current_frame = ?, total_frames = ?, fps = ?, eta_seconds = ?
             WHERE id = ? RETURNING cancel_requested",
        )
        .bind(r.stage.as_str())
        .bind(r.current_frame as i64)
        .bind(r.total_frames as i64)
        .bind(r.fps)
        .bind(r.eta_seconds)
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        // A deleted task counts as cancelled.
        Ok(cancel.is_none_or(|c| c != 0))
    }

    async fn finish(&self, id: &TaskId, o: &Outcome) -> Result<(), StoreError> {
        debug_assert!(o.status.is_terminal(), "{} is not an end", o.status);
        sqlx::query(
            "UPDATE tasks SET status = ?, stage = ?, error_code = ?, error_message = ?, finished_at = ?,
             expires_at = ?, output_bytes = ?, worker_pid = NULL
             WHERE id = ? AND status IN (?, ?, ?)",
        )
        .bind(o.status.as_str())
        .bind(Stage::from(o.status).as_str())
        .bind(o.error.as_ref().map(|e| e.code.as_str()))
        .bind(o.error.as_ref().map(|e| e.message.as_str()))
        .bind(now_ms())
        .bind(o.expires_at)
        .bind(o.output_bytes)
        .bind(id.as_str())
        .bind(Status::Draft.as_str())
        .bind(Status::Queued.as_str())
        .bind(Status::Processing.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn start(&self, t: &Task) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tasks SET status = ?, stage = ?, settings = ?, models = ?, notes = ?,
             out_width = ?, out_height = ?, expires_at = NULL WHERE id = ? AND status = ?",
        )
        .bind(Status::Queued.as_str())
        .bind(Stage::Queued.as_str())
        .bind(json(&t.settings))
        .bind(json(&t.models))
        .bind(json(&t.notes))
        .bind(t.output_size.0)
        .bind(t.output_size.1)
        .bind(t.id.as_str())
        .bind(Status::Draft.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release(&self, id: &TaskId) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tasks SET status = ?, stage = ?, worker_pid = NULL, current_frame = 0
             WHERE id = ? AND status = ?",
        )
        .bind(Status::Queued.as_str())
        .bind(Stage::Queued.as_str())
        .bind(id.as_str())
        .bind(Status::Processing.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn request_cancel(&self, id: &TaskId) -> Result<(), StoreError> {
        sqlx::query("UPDATE tasks SET cancel_requested = 1 WHERE id = ?")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn requeue_interrupted(&self) -> Result<Vec<TaskId>, StoreError> {
        self.ids(
            sqlx::query_scalar(
                "UPDATE tasks SET status = ?, stage = ?, worker_pid = NULL, current_frame = 0
                 WHERE status = ? AND cancel_requested = 0 RETURNING id",
            )
            .bind(Status::Queued.as_str())
            .bind(Stage::Queued.as_str())
            .bind(Status::Processing.as_str()),
        )
        .await
    }

    async fn running_on(&self, pid: u32) -> Result<Vec<TaskId>, StoreError> {
        self.ids(
            sqlx::query_scalar("SELECT id FROM tasks WHERE status = ? AND worker_pid = ?")
                .bind(Status::Processing.as_str())
                .bind(pid as i64),
        )
        .await
    }

    async fn expired(&self, now: i64) -> Result<Vec<Task>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM tasks WHERE expires_at IS NOT NULL AND expires_at <= ?
             AND status IN (?, ?, ?, ?)",
        )
        .bind(now)
        .bind(Status::Draft.as_str())
        .bind(Status::Completed.as_str())
        .bind(Status::Failed.as_str())
        .bind(Status::Cancelled.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    async fn mark_expired(&self, id: &TaskId) -> Result<(), StoreError> {
        sqlx::query("UPDATE tasks SET status = ?, stage = ? WHERE id = ?")
            .bind(Status::Expired.as_str())
            .bind(Stage::Expired.as_str())
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn referenced_files(&self) -> Result<HashSet<String>, StoreError> {
        let rows = sqlx::query("SELECT input_path, output_path FROM tasks WHERE status <> ?")
            .bind(Status::Expired.as_str())
            .fetch_all(&self.pool)
            .await?;
        let name = |p: String| {
            Path::new(&p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        };
        Ok(rows
            .iter()
            .flat_map(|r| {
                [
                    name(r.get::<String, _>("input_path")),
                    name(r.get::<String, _>("output_path")),
                ]
            })
            .flatten()
            .collect())
    }

    async fn delete(&self, id: &TaskId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM tasks WHERE id = ?")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serialises")
}

fn parse_id(id: &str) -> Result<TaskId, StoreError> {
    TaskId::parse(id).ok_or_else(|| StoreError::Corrupt(id.to_string(), "not a task id".into()))
}

/// A text column read as `T`, or why the row is corrupt.
fn parsed<T: FromStr>(r: &SqliteRow, id: &str, col: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    r.get::<&str, _>(col)
        .parse()
        .map_err(|e| StoreError::Corrupt(id.to_string(), format!("{col}: {e}")))
}

/// A JSON column, decoded.
fn column<T: serde::de::DeserializeOwned>(
    r: &SqliteRow,
    id: &str,
    col: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(r.get::<&str, _>(col))
        .map_err(|e| StoreError::Corrupt(id.to_string(), format!("{col}: {e}")))
}

fn from_row(r: &SqliteRow) -> Result<Task, StoreError> {
    let id: String = r.get("id");
    let code: Option<String> = r.get("error_code");
    let error = match code {
        None => None,
        Some(code) => Some(TaskError {
            code: Code::parse(&code).ok_or_else(|| {
                StoreError::Corrupt(id.clone(), format!("error_code: unknown value {code:?}"))
            })?,
            message: r
                .get::<Option<String>, _>("error_message")
                .unwrap_or_default(),
        }),
    };
    Ok(Task {
        owner: r.get("owner"),
        status: parsed(r, &id, "status")?,
        stage: parsed(r, &id, "stage")?,
        settings: column(r, &id, "settings")?,
        models: column(r, &id, "models")?,
        notes: column(r, &id, "notes")?,
        input_name: r.get("input_name"),
        input_path: PathBuf::from(r.get::<String, _>("input_path")),
        output_path: PathBuf::from(r.get::<String, _>("output_path")),
        input: column(r, &id, "input")?,
        output_size: (
            r.get::<i64, _>("out_width") as u32,
            r.get::<i64, _>("out_height") as u32,
        ),
        current_frame: r.get::<i64, _>("current_frame") as u64,
        total_frames: r.get::<i64, _>("total_frames") as u64,
        fps: r.get("fps"),
        eta_seconds: r.get("eta_seconds"),
        error,
        created_at: r.get("created_at"),
        started_at: r.get("started_at"),
        finished_at: r.get("finished_at"),
        expires_at: r.get("expires_at"),
        output_bytes: r.get("output_bytes"),
        id: parse_id(&id)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task row with a status no version wrote is an error, not a failed task.
    #[tokio::test]
    async fn unknown_stored_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        let id = TaskId::new();
        sqlx::query(
            "INSERT INTO tasks (id, status, stage, settings, models, notes, input_name, input_path,
             output_path, input, out_width, out_height, created_at)
             VALUES (?, 'finished', 'queued', '{}', '[]', '[]', 'a', 'a', 'b', '{}', 1, 1, 0)",
        )
        .bind(id.as_str())
        .execute(&store.pool)
        .await
        .unwrap();
        let err = store.get(&id).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(_, why) if why.contains("status")),
            "{err}"
        );
        // Opening again runs no migration twice.
        SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
    }
}
