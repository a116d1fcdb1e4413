//! The embedded backend: tasks in a SQLite file (WAL, so the server and its worker processes
//! share it), the schema from versioned migrations in `migrations/sqlite`. Statuses are bound
//! as parameters from [`Status`], never written as literals in the SQL.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::row::{file_names, json, parse_id, status_counts, task};
use super::{
    now_ms, Outcome, Report, Stage, Status, StoreError, Task, TaskId, TaskStore, WorkerId,
    WorkerInfo,
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
            .map(|r| task(&r))
            .transpose()
    }

    /// Ends the task if its status is one of `from` (and, given `worker`, that worker runs it);
    /// whether it did.
    async fn end(
        &self,
        id: &TaskId,
        o: &Outcome,
        from: &[Status],
        worker: Option<WorkerId>,
    ) -> Result<bool, StoreError> {
        debug_assert!(o.status.is_terminal(), "{} is not an end", o.status);
        let placeholders = vec!["?"; from.len()].join(", ");
        let sql = format!(
            "UPDATE tasks SET status = ?, stage = ?, error_code = ?, error_message = ?, finished_at = ?,
             expires_at = ?, output_bytes = ?, notes = COALESCE(?, notes), worker_pid = NULL
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
            .bind(o.notes.as_ref().map(json))
            .bind(id.as_str())
            .bind(worker.map(WorkerId::get))
            .bind(worker.map(WorkerId::get));
        for status in from {
            query = query.bind(status.as_str());
        }
        Ok(query.execute(&self.pool).await?.rows_affected() == 1)
    }

    /// Puts a processing task (of `worker`, if given) back in the queue.
    async fn requeue(&self, id: &TaskId, worker: Option<WorkerId>) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tasks SET status = ?, stage = ?, worker_pid = NULL, current_frame = 0
             WHERE id = ? AND status = ? AND (? IS NULL OR worker_pid = ?)",
        )
        .bind(Status::Queued.as_str())
        .bind(Stage::Queued.as_str())
        .bind(id.as_str())
        .bind(Status::Processing.as_str())
        .bind(worker.map(WorkerId::get))
        .bind(worker.map(WorkerId::get))
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
             input_name, input_key, output_key, input, out_width, out_height, total_frames, created_at,
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
        .bind(t.input_key.as_str())
        .bind(t.output_key.as_str())
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
        Ok((rows.iter().map(task).collect::<Result<_, _>>()?, total))
    }

    async fn count_by_status(&self) -> Result<Vec<(Status, i64)>, StoreError> {
        status_counts(
            sqlx::query_as("SELECT status, COUNT(*) AS n FROM tasks GROUP BY status")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn count_waiting(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE status = ?")
                .bind(Status::Queued.as_str())
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn claim_next(
        &self,
        worker: WorkerId,
        lease_until: i64,
    ) -> Result<Option<Task>, StoreError> {
        // One statement: SQLite runs writers one at a time, so two workers never get the same.
        self.one(
            sqlx::query(
                "UPDATE tasks SET status = ?, stage = ?, started_at = ?, worker_pid = ?, lease_until = ?
                 WHERE id = (SELECT id FROM tasks WHERE status = ? ORDER BY queued_at, id LIMIT 1)
                 AND status = ? RETURNING *",
            )
            .bind(Status::Processing.as_str())
            .bind(Stage::Starting.as_str())
            .bind(now_ms())
            .bind(worker.get())
            .bind(lease_until)
            .bind(Status::Queued.as_str())
            .bind(Status::Queued.as_str()),
        )
        .await
    }

    async fn progress(
        &self,
        id: &TaskId,
        worker: WorkerId,
        lease_until: i64,
        r: &Report,
    ) -> Result<bool, StoreError> {
        let cancel: Option<i64> = sqlx::query_scalar(
            "UPDATE tasks SET stage = ?, current_frame = ?, total_frames = ?, fps = ?, eta_seconds = ?,
             resumed_frames = ?, upscaled_frames = ?, lease_until = ?
             WHERE id = ? AND status = ? AND worker_pid = ? RETURNING cancel_requested",
        )
        .bind(r.stage.as_str())
        .bind(r.current_frame as i64)
        .bind(r.total_frames as i64)
        .bind(r.fps)
        .bind(r.eta_seconds)
        .bind(r.resumed_frames as i64)
        .bind(r.upscaled_frames as i64)
        .bind(lease_until)
        .bind(id.as_str())
        .bind(Status::Processing.as_str())
        .bind(worker.get())
        .fetch_optional(&self.pool)
        .await?;
        // A deleted task, or one that is not this worker's, counts as cancelled.
        Ok(cancel.is_none_or(|c| c != 0))
    }

    async fn finish(&self, id: &TaskId, worker: WorkerId, o: &Outcome) -> Result<bool, StoreError> {
        self.end(id, o, &[Status::Processing], Some(worker)).await
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

    async fn release(&self, id: &TaskId, worker: WorkerId) -> Result<(), StoreError> {
        self.requeue(id, Some(worker)).await
    }

    async fn request_cancel(&self, id: &TaskId) -> Result<(), StoreError> {
        sqlx::query("UPDATE tasks SET cancel_requested = 1 WHERE id = ?")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn requeue_interrupted(
        &self,
        now: i64,
        expires_at: i64,
    ) -> Result<Vec<TaskId>, StoreError> {
        // Those whose cancel was asked for are cancelled, not run again.
        sqlx::query(
            "UPDATE tasks SET status = ?, stage = ?, worker_pid = NULL, finished_at = ?, expires_at = ?
             WHERE status = ? AND cancel_requested = 1 AND (lease_until IS NULL OR lease_until < ?)",
        )
        .bind(Status::Cancelled.as_str())
        .bind(Stage::Cancelled.as_str())
        .bind(now_ms())
        .bind(expires_at)
        .bind(Status::Processing.as_str())
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.ids(
            sqlx::query_scalar(
                "UPDATE tasks SET status = ?, stage = ?, worker_pid = NULL, current_frame = 0
                 WHERE status = ? AND (lease_until IS NULL OR lease_until < ?) RETURNING id",
            )
            .bind(Status::Queued.as_str())
            .bind(Stage::Queued.as_str())
            .bind(Status::Processing.as_str())
            .bind(now),
        )
        .await
    }

    async fn running_on(&self, worker: WorkerId) -> Result<Vec<TaskId>, StoreError> {
        self.ids(
            sqlx::query_scalar("SELECT id FROM tasks WHERE status = ? AND worker_pid = ?")
                .bind(Status::Processing.as_str())
                .bind(worker.get()),
        )
        .await
    }

    async fn lapsed(&self, now: i64) -> Result<Vec<(TaskId, WorkerId)>, StoreError> {
        let held: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, worker_pid FROM tasks WHERE status = ? AND worker_pid IS NOT NULL
             AND (lease_until IS NULL OR lease_until < ?)",
        )
        .bind(Status::Processing.as_str())
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        super::row::held(&held)
    }

    async fn processing(&self) -> Result<Vec<Task>, StoreError> {
        let rows = sqlx::query("SELECT * FROM tasks WHERE status = ? ORDER BY started_at, id")
            .bind(Status::Processing.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(task).collect()
    }

    async fn count_crash(
        &self,
        id: &TaskId,
        dead: WorkerId,
        taker: WorkerId,
        lease_until: i64,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "UPDATE tasks SET
             crashes = CASE WHEN resumed_frames > crash_resumed THEN 1 ELSE crashes + 1 END,
             crash_resumed = resumed_frames, worker_pid = ?, lease_until = ?
             WHERE id = ? AND status = ? AND worker_pid = ?
             RETURNING crashes, cancel_requested",
        )
        .bind(taker.get())
        .bind(lease_until)
        .bind(id.as_str())
        .bind(Status::Processing.as_str())
        .bind(dead.get())
        .fetch_optional(&self.pool)
        .await?)
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
        rows.iter().map(task).collect()
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
        let paths: Vec<(String, String)> =
            sqlx::query_as("SELECT input_key, output_key FROM tasks WHERE status <> ?")
                .bind(Status::Expired.as_str())
                .fetch_all(&self.pool)
                .await?;
        Ok(file_names(paths))
    }

    async fn delete(&self, id: &TaskId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM tasks WHERE id = ?")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn heartbeat(&self, w: &WorkerInfo) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO workers (id, host, pid, device, standalone, task_id, started_at, seen_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET task_id = excluded.task_id, seen_at = excluded.seen_at",
        )
        .bind(w.id.get())
        .bind(&w.host)
        .bind(w.pid)
        .bind(&w.device)
        .bind(i64::from(w.standalone))
        .bind(w.task.as_ref().map(TaskId::as_str))
        .bind(w.started_at)
        .bind(w.seen_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn workers(&self, since: i64) -> Result<Vec<WorkerInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, host, pid, device, standalone, task_id, started_at, seen_at FROM workers
             WHERE seen_at >= ? ORDER BY started_at, id",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(super::row::worker).collect()
    }

    async fn forget_workers(
        &self,
        worker: Option<WorkerId>,
        before: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM workers WHERE id = ? OR seen_at < ?")
            .bind(worker.map(WorkerId::get))
            .bind(if worker.is_some() { i64::MIN } else { before })
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn claim_segment(
        &self,
        id: &TaskId,
        index: i64,
        worker: WorkerId,
        now: i64,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO segment_claims (task_id, idx, worker, lease_until, done) VALUES (?, ?, ?, ?, 0)
             ON CONFLICT (task_id, idx) DO UPDATE
             SET worker = excluded.worker, lease_until = excluded.lease_until
             WHERE segment_claims.done = 0
               AND (segment_claims.lease_until < ? OR segment_claims.worker = excluded.worker)",
        )
        .bind(id.as_str())
        .bind(index)
        .bind(worker.get())
        .bind(lease_until)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_segment(
        &self,
        id: &TaskId,
        index: i64,
        worker: WorkerId,
        done: bool,
    ) -> Result<(), StoreError> {
        // Done: the row says so for good. Not done: the row goes, and the segment is free.
        let sql = if done {
            "UPDATE segment_claims SET done = 1, lease_until = 0\n             WHERE task_id = ? AND idx = ? AND worker = ? AND done = 0"
        } else {
            "DELETE FROM segment_claims WHERE task_id = ? AND idx = ? AND worker = ? AND done = 0"
        };
        sqlx::query(sql)
            .bind(id.as_str())
            .bind(index)
            .bind(worker.get())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn reopen_segment(&self, id: &TaskId, index: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE segment_claims SET done = 0, lease_until = 0
             WHERE task_id = ? AND idx = ? AND done = 1",
        )
        .bind(id.as_str())
        .bind(index)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn segment_held(&self, id: &TaskId, index: i64, now: i64) -> Result<bool, StoreError> {
        let held: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM segment_claims
             WHERE task_id = ? AND idx = ? AND done = 0 AND lease_until >= ?",
        )
        .bind(id.as_str())
        .bind(index)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(held > 0)
    }

    async fn segments_taken(&self, id: &TaskId, now: i64) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM segment_claims
             WHERE task_id = ? AND (done = 1 OR lease_until >= ?)",
        )
        .bind(id.as_str())
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn renew_segments(
        &self,
        id: &TaskId,
        worker: WorkerId,
        now: i64,
        lease_until: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE segment_claims SET lease_until = ?\n             WHERE task_id = ? AND worker = ? AND done = 0 AND lease_until >= ?",
        )
        .bind(lease_until)
        .bind(id.as_str())
        .bind(worker.get())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn forget_segment_claims(&self) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM segment_claims WHERE task_id NOT IN
             (SELECT id FROM tasks WHERE status IN (?, ?))",
        )
        .bind(Status::Processing.as_str())
        .bind(Status::Queued.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
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
            "INSERT INTO tasks (id, status, stage, settings, models, notes, input_name, input_key,
             output_key, input, out_width, out_height, created_at)
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

    /// The races between the API, the sweeper and workers end the way each side expects.
    #[tokio::test]
    async fn queue_order_and_races() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        crate::store::tests::queue_order_and_races(&store).await;
    }
}
