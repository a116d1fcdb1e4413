//! The shared backend: tasks in PostgreSQL, for API nodes and workers on many machines. The
//! schema comes from versioned migrations in `migrations/postgres` (sqlx takes an advisory
//! lock, so nodes starting together migrate once). A worker claims the oldest queued row with
//! `FOR UPDATE SKIP LOCKED`: any number of workers poll, each task goes to one. Statuses are
//! bound as parameters from [`Status`], never written as literals in the SQL.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};

use super::row::{file_names, json, parse_id, status_counts, task};
use super::{
    now_ms, Outcome, Report, Stage, Status, StoreError, Task, TaskId, TaskStore, WorkerId,
    WorkerInfo,
};

/// The migrations, compiled in.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How long a request waits for a connection before the store counts as unavailable.
const ACQUIRE: Duration = Duration::from_secs(5);

/// Tasks in a PostgreSQL database.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

/// The statuses as the text array `status = ANY($n)` takes.
fn texts(statuses: &[Status]) -> Vec<String> {
    statuses.iter().map(|s| s.as_str().to_string()).collect()
}

fn rows(rows: &[PgRow]) -> Result<Vec<Task>, StoreError> {
    rows.iter().map(task).collect()
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`) and brings the
    /// schema up to date.
    pub async fn open(url: &str) -> Result<PostgresStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(ACQUIRE)
            .connect(url)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(PostgresStore { pool })
    }

    async fn one<'q>(&self, query: PgQuery<'q>) -> Result<Option<Task>, StoreError> {
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
        let done = sqlx::query(
            "UPDATE tasks SET status = $1, stage = $2, error_code = $3, error_message = $4,
             finished_at = $5, expires_at = $6, output_bytes = $7, worker_pid = NULL,
             notes = COALESCE($11, notes)
             WHERE id = $8 AND ($9::BIGINT IS NULL OR worker_pid = $9) AND status = ANY($10)",
        )
        .bind(o.status.as_str())
        .bind(Stage::from(o.status).as_str())
        .bind(o.error.as_ref().map(|e| e.code.as_str()))
        .bind(o.error.as_ref().map(|e| e.message.as_str()))
        .bind(now_ms())
        .bind(o.expires_at)
        .bind(o.output_bytes)
        .bind(id.as_str())
        .bind(worker.map(WorkerId::get))
        .bind(texts(from))
        .bind(o.notes.as_ref().map(json))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Puts a processing task (of `worker`, if given) back in the queue.
    async fn requeue(&self, id: &TaskId, worker: Option<WorkerId>) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tasks SET status = $1, stage = $2, worker_pid = NULL, current_frame = 0
             WHERE id = $3 AND status = $4 AND ($5::BIGINT IS NULL OR worker_pid = $5)",
        )
        .bind(Status::Queued.as_str())
        .bind(Stage::Queued.as_str())
        .bind(id.as_str())
        .bind(Status::Processing.as_str())
        .bind(worker.map(WorkerId::get))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn ids<'q>(&self, query: PgScalar<'q>) -> Result<Vec<TaskId>, StoreError> {
        let ids: Vec<String> = query.fetch_all(&self.pool).await?;
        ids.iter().map(|id| parse_id(id)).collect()
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;
type PgScalar<'q> =
    sqlx::query::QueryScalar<'q, sqlx::Postgres, String, sqlx::postgres::PgArguments>;

#[async_trait::async_trait]
impl TaskStore for PostgresStore {
    async fn insert(&self, t: &Task, idempotency_key: Option<&str>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tasks (id, owner, idempotency_key, status, stage, settings, models, notes,
             input_name, input_key, output_key, input, out_width, out_height, total_frames, created_at,
             expires_at, queued_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
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
        .bind(i64::from(t.output_size.0))
        .bind(i64::from(t.output_size.1))
        .bind(t.total_frames as i64)
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind((t.status == Status::Queued).then_some(t.created_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        self.one(sqlx::query("SELECT * FROM tasks WHERE id = $1").bind(id.as_str()))
            .await
    }

    async fn find_idempotent(
        &self,
        owner: Option<&str>,
        key: &str,
    ) -> Result<Option<Task>, StoreError> {
        self.one(
            sqlx::query(
                "SELECT * FROM tasks WHERE owner IS NOT DISTINCT FROM $1 AND idempotency_key = $2",
            )
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
        let found = sqlx::query(
            "SELECT * FROM tasks WHERE ($1::TEXT IS NULL OR owner = $1)
             ORDER BY created_at DESC LIMIT $2 OFFSET $3",
        )
        .bind(owner)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE ($1::TEXT IS NULL OR owner = $1)")
                .bind(owner)
                .fetch_one(&self.pool)
                .await?;
        Ok((rows(&found)?, total))
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
            sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE status = $1")
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
        // SKIP LOCKED: workers polling at once each lock a different row, none waits.
        self.one(
            sqlx::query(
                "UPDATE tasks SET status = $1, stage = $2, started_at = $3, worker_pid = $4,
                 lease_until = $6
                 WHERE id = (SELECT id FROM tasks WHERE status = $5 ORDER BY queued_at, id
                             LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING *",
            )
            .bind(Status::Processing.as_str())
            .bind(Stage::Starting.as_str())
            .bind(now_ms())
            .bind(worker.get())
            .bind(Status::Queued.as_str())
            .bind(lease_until),
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
            "UPDATE tasks SET stage = $1, current_frame = $2, total_frames = $3, fps = $4,
             eta_seconds = $5, resumed_frames = $6, upscaled_frames = $7, lease_until = $11
             WHERE id = $8 AND status = $9 AND worker_pid = $10 RETURNING cancel_requested",
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
        .bind(worker.get())
        .bind(lease_until)
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
            "UPDATE tasks SET status = $1, stage = $2, settings = $3, models = $4, notes = $5,
             out_width = $6, out_height = $7, expires_at = NULL, queued_at = $8
             WHERE id = $9 AND status = $10",
        )
        .bind(Status::Queued.as_str())
        .bind(Stage::Queued.as_str())
        .bind(json(&t.settings))
        .bind(json(&t.models))
        .bind(json(&t.notes))
        .bind(i64::from(t.output_size.0))
        .bind(i64::from(t.output_size.1))
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
        sqlx::query("UPDATE tasks SET cancel_requested = 1 WHERE id = $1")
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
            "UPDATE tasks SET status = $1, stage = $2, worker_pid = NULL, finished_at = $3,
             expires_at = $4 WHERE status = $5 AND cancel_requested = 1
             AND (lease_until IS NULL OR lease_until < $6)",
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
                "UPDATE tasks SET status = $1, stage = $2, worker_pid = NULL, current_frame = 0
                 WHERE status = $3 AND (lease_until IS NULL OR lease_until < $4) RETURNING id",
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
            sqlx::query_scalar("SELECT id FROM tasks WHERE status = $1 AND worker_pid = $2")
                .bind(Status::Processing.as_str())
                .bind(worker.get()),
        )
        .await
    }

    async fn lapsed(&self, now: i64) -> Result<Vec<(TaskId, WorkerId)>, StoreError> {
        let held: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, worker_pid FROM tasks WHERE status = $1 AND worker_pid IS NOT NULL
             AND (lease_until IS NULL OR lease_until < $2)",
        )
        .bind(Status::Processing.as_str())
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        super::row::held(&held)
    }

    async fn processing(&self) -> Result<Vec<Task>, StoreError> {
        let found = sqlx::query("SELECT * FROM tasks WHERE status = $1 ORDER BY started_at, id")
            .bind(Status::Processing.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows(&found)
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
             crash_resumed = resumed_frames, worker_pid = $1, lease_until = $2
             WHERE id = $3 AND status = $4 AND worker_pid = $5
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
        let found = sqlx::query(
            "SELECT * FROM tasks WHERE expires_at IS NOT NULL AND expires_at <= $1
             AND status = ANY($2)",
        )
        .bind(now)
        .bind(texts(&[
            Status::Draft,
            Status::Completed,
            Status::Failed,
            Status::Cancelled,
        ]))
        .fetch_all(&self.pool)
        .await?;
        rows(&found)
    }

    async fn mark_expired(&self, id: &TaskId) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tasks SET status = $1, stage = $2 WHERE id = $3 AND status = ANY($4)",
        )
        .bind(Status::Expired.as_str())
        .bind(Stage::Expired.as_str())
        .bind(id.as_str())
        .bind(texts(&[
            Status::Draft,
            Status::Completed,
            Status::Failed,
            Status::Cancelled,
        ]))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn referenced_files(&self) -> Result<HashSet<String>, StoreError> {
        let paths: Vec<(String, String)> =
            sqlx::query_as("SELECT input_key, output_key FROM tasks WHERE status <> $1")
                .bind(Status::Expired.as_str())
                .fetch_all(&self.pool)
                .await?;
        Ok(file_names(paths))
    }

    async fn delete(&self, id: &TaskId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM tasks WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn heartbeat(&self, w: &WorkerInfo) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO workers (id, host, pid, device, standalone, task_id, started_at, seen_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
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
             WHERE seen_at >= $1 ORDER BY started_at, id",
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
        sqlx::query("DELETE FROM workers WHERE id = $1 OR seen_at < $2")
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
            "INSERT INTO segment_claims (task_id, idx, worker, lease_until, done) VALUES ($1, $2, $3, $4, 0)
             ON CONFLICT (task_id, idx) DO UPDATE
             SET worker = excluded.worker, lease_until = excluded.lease_until
             WHERE segment_claims.done = 0
               AND (segment_claims.lease_until < $5 OR segment_claims.worker = excluded.worker)",
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
            "UPDATE segment_claims SET done = 1, lease_until = 0\n             WHERE task_id = $1 AND idx = $2 AND worker = $3 AND done = 0"
        } else {
            "DELETE FROM segment_claims WHERE task_id = $1 AND idx = $2 AND worker = $3 AND done = 0"
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
             WHERE task_id = $1 AND idx = $2 AND done = 1",
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
             WHERE task_id = $1 AND idx = $2 AND done = 0 AND lease_until >= $3",
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
             WHERE task_id = $1 AND (done = 1 OR lease_until >= $2)",
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
            "UPDATE segment_claims SET lease_until = $1\n             WHERE task_id = $2 AND worker = $3 AND done = 0 AND lease_until >= $4",
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
             (SELECT id FROM tasks WHERE status IN ($1, $2))",
        )
        .bind(Status::Processing.as_str())
        .bind(Status::Queued.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
impl PostgresStore {
    /// Runs SQL as it is (the tests make their databases with it).
    pub(crate) async fn execute_raw(&self, sql: &str) -> Result<(), StoreError> {
        sqlx::raw_sql(sql).execute(&self.pool).await?;
        Ok(())
    }
}
