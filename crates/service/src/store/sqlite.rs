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
    now_ms, AfterCrash, Outcome, Report, Stage, Status, StoreError, Task, TaskError, TaskId,
    TaskStore, MAX_CRASHES,
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

    /// Ends the task if its status is one of `from` (and, given `pid`, that worker runs it);
    /// whether it did.
    async fn end(
        &self,
        id: &TaskId,
        o: &Outcome,
        from: &[Status],
        pid: Option<u32>,
    ) -> Result<bool, StoreError> {
        debug_assert!(o.status.is_terminal(), "{} is not an end", o.status);
        let placeholders = vec!["?"; from.len()].join(", ");
        let sql = format!(
            "UPDATE tasks SET status = ?, stage = ?, error_code = ?, error_message = ?, finished_at = ?,
             expires_at = ?, output_bytes = ?, worker_pid = NULL
             WHERE id = ? AND (? IS NULL OR worker_pid = ?) AND status IN ({placeholders})"
        );
        let mut query = sqlx::query(&sql)
            .bind(o.status.as_str())
            .bind(Stage::from(o.status).as_str())
            .bind(o.error.as_ref().map(|e| e.code.as_str()))
            .bind(o.error.as_ref().map(|e| e.message.as_str()))
            .bind(now_ms())
            .bind(o.expires_at)
            .bind(o.output_bytes)
            .bind(id.as_str())
            .bind(pid.map(i64::from))
            .bind(pid.map(i64::from));
        for status in from {
            query = query.bind(status.as_str());
        }
        Ok(query.execute(&self.pool).await?.rows_affected() == 1)
    }

    /// Puts a processing task (of worker `pid`, if given) back in the queue.
    async fn requeue(&self, id: &TaskId, pid: Option<u32>) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tasks SET status = ?, stage = ?, worker_pid = NULL, current_frame = 0
             WHERE id = ? AND status = ? AND (? IS NULL OR worker_pid = ?)",
        )
        .bind(Status::Queued.as_str())
        .bind(Stage::Queued.as_str())
        .bind(id.as_str())
        .bind(Status::Processing.as_str())
        .bind(pid.map(i64::from))
        .bind(pid.map(i64::from))
        .execute(&self.pool)
        .await?;
        Ok(())
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
             expires_at, queued_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .bind((t.status == Status::Queued).then_some(t.created_at))
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
                 WHERE id = (SELECT id FROM tasks WHERE status = ? ORDER BY queued_at, id LIMIT 1)
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

    async fn progress(&self, id: &TaskId, pid: u32, r: &Report) -> Result<bool, StoreError> {
        let cancel: Option<i64> = sqlx::query_scalar(
            "UPDATE tasks SET stage = ?, current_frame = ?, total_frames = ?, fps = ?, eta_seconds = ?,
             resumed_frames = ?, upscaled_frames = ?
             WHERE id = ? AND status = ? AND worker_pid = ? RETURNING cancel_requested",
        )
        .bind(r.stage.as_str())
        .bind(r.current_frame as i64)
        .bind(r.total_frames as i64)
        .bind(r.fps)
        .bind(r.eta_seconds)
        .bind(r.resumed_frames as i64)
        .bind(r.upscaled_frames as i64)
        .bind(id.as_str())
        .bind(Status::Processing.as_str())
        .bind(pid as i64)
        .fetch_optional(&self.pool)
        .await?;
        // A deleted task, or one that is not this worker's, counts as cancelled.
        Ok(cancel.is_none_or(|c| c != 0))
    }

    async fn finish(&self, id: &TaskId, pid: u32, o: &Outcome) -> Result<(), StoreError> {
        self.end(id, o, &[Status::Processing], Some(pid))
            .await
            .map(|_| ())
    }

    async fn cancel_waiting(&self, id: &TaskId, o: &Outcome) -> Result<bool, StoreError> {
        self.end(id, o, &[Status::Draft, Status::Queued], None)
            .await
    }

    async fn start(&self, t: &Task) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tasks SET status = ?, stage = ?, settings = ?, models = ?, notes = ?,
             out_width = ?, out_height = ?, expires_at = NULL, queued_at = ?
             WHERE id = ? AND status = ?",
        )
        .bind(Status::Queued.as_str())
        .bind(Stage::Queued.as_str())
        .bind(json(&t.settings))
        .bind(json(&t.models))
        .bind(json(&t.notes))
        .bind(t.output_size.0)
        .bind(t.output_size.1)
        .bind(now_ms())
        .bind(t.id.as_str())
        .bind(Status::Draft.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release(&self, id: &TaskId, pid: u32) -> Result<(), StoreError> {
        self.requeue(id, Some(pid)).await
    }

    async fn request_cancel(&self, id: &TaskId) -> Result<(), StoreError> {
        sqlx::query("UPDATE tasks SET cancel_requested = 1 WHERE id = ?")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn requeue_interrupted(&self, expires_at: i64) -> Result<Vec<TaskId>, StoreError> {
        // Those whose cancel was asked for are cancelled, not run again.
        sqlx::query(
            "UPDATE tasks SET status = ?, stage = ?, worker_pid = NULL, finished_at = ?, expires_at = ?
             WHERE status = ? AND cancel_requested = 1",
        )
        .bind(Status::Cancelled.as_str())
        .bind(Stage::Cancelled.as_str())
        .bind(now_ms())
        .bind(expires_at)
        .bind(Status::Processing.as_str())
        .execute(&self.pool)
        .await?;
        self.ids(
            sqlx::query_scalar(
                "UPDATE tasks SET status = ?, stage = ?, worker_pid = NULL, current_frame = 0
                 WHERE status = ? RETURNING id",
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

    async fn processing(&self) -> Result<Vec<Task>, StoreError> {
        let rows = sqlx::query("SELECT * FROM tasks WHERE status = ? ORDER BY started_at, id")
            .bind(Status::Processing.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }

    async fn crashed(
        &self,
        id: &TaskId,
        failed: &Outcome,
        cancelled: &Outcome,
    ) -> Result<AfterCrash, StoreError> {
        // Counted in one statement: a finished segment since the last death (more frames
        // resumed) starts the count again.
        let crashes: Option<(i64, i64)> = sqlx::query_as(
            "UPDATE tasks SET
             crashes = CASE WHEN resumed_frames > crash_resumed OR crashes = 0 THEN 1 ELSE crashes + 1 END,
             crash_resumed = resumed_frames
             WHERE id = ? AND status = ? RETURNING crashes, cancel_requested",
        )
        .bind(id.as_str())
        .bind(Status::Processing.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some((crashes, cancel)) = crashes else {
            return Ok(AfterCrash::Ended);
        };
        if cancel != 0 {
            self.end(id, cancelled, &[Status::Processing], None).await?;
            return Ok(AfterCrash::Ended);
        }
        if crashes >= MAX_CRASHES {
            self.end(id, failed, &[Status::Processing], None).await?;
            return Ok(AfterCrash::Failed);
        }
        self.requeue(id, None).await?;
        Ok(AfterCrash::Requeued)
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

    async fn mark_expired(&self, id: &TaskId) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tasks SET status = ?, stage = ? WHERE id = ? AND status IN (?, ?, ?, ?)",
        )
        .bind(Status::Expired.as_str())
        .bind(Stage::Expired.as_str())
        .bind(id.as_str())
        .bind(Status::Draft.as_str())
        .bind(Status::Completed.as_str())
        .bind(Status::Failed.as_str())
        .bind(Status::Cancelled.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
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
        resumed_frames: r.get::<i64, _>("resumed_frames") as u64,
        upscaled_frames: r.get::<i64, _>("upscaled_frames") as u64,
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

    fn task(status: Status, created_at: i64) -> Task {
        Task {
            id: TaskId::new(),
            owner: None,
            status,
            stage: Stage::from(status),
            settings: Default::default(),
            models: vec![],
            notes: vec![],
            input_name: "in.mp4".into(),
            input_path: "in.mp4".into(),
            output_path: "out.mp4".into(),
            input: Default::default(),
            output_size: (2, 2),
            current_frame: 0,
            total_frames: 10,
            resumed_frames: 0,
            upscaled_frames: 0,
            fps: 0.0,
            eta_seconds: 0.0,
            error: None,
            created_at,
            started_at: None,
            finished_at: None,
            expires_at: None,
            output_bytes: None,
        }
    }

    fn cancelled() -> Outcome {
        Outcome {
            status: Status::Cancelled,
            error: None,
            expires_at: 0,
            output_bytes: None,
        }
    }

    /// The races between the API, the sweeper and workers end the way each side expects.
    #[tokio::test]
    async fn queue_order_and_races() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        // A draft made first but started after a queued task waits behind it.
        let draft = task(Status::Draft, 1);
        let queued = task(Status::Queued, 2);
        store.insert(&draft, None).await.unwrap();
        store.insert(&queued, None).await.unwrap();
        assert!(store.start(&draft).await.unwrap());
        let first = store.claim_next(7).await.unwrap().unwrap();
        assert_eq!(first.id, queued.id);
        // A task a worker holds is not cancelled from under it; a waiting one is.
        assert!(!store.cancel_waiting(&first.id, &cancelled()).await.unwrap());
        assert!(store.cancel_waiting(&draft.id, &cancelled()).await.unwrap());
        // Expiry never takes a task that runs.
        assert!(!store.mark_expired(&first.id).await.unwrap());
        assert!(store.mark_expired(&draft.id).await.unwrap());
        // At restart: a running task goes back to the queue, unless its cancel was asked.
        let asked = task(Status::Queued, 3);
        store.insert(&asked, None).await.unwrap();
        let asked = store.claim_next(8).await.unwrap().unwrap();
        store.request_cancel(&asked.id).await.unwrap();
        let requeued = store.requeue_interrupted(99).await.unwrap();
        assert_eq!(requeued, vec![first.id.clone()]);
        let asked = store.get(&asked.id).await.unwrap().unwrap();
        assert_eq!(
            (asked.status, asked.expires_at),
            (Status::Cancelled, Some(99))
        );
        assert_eq!(store.count_waiting().await.unwrap(), 1);
    }
}
