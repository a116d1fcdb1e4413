//! Tasks as rows in the embedded SQLite database: the API writes requests, workers write
//! progress and results, and both read. The job queue itself (apalis) lives in the same file.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
};
use sqlx::Row;

use vsr_media::settings::Settings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Uploaded and probed, waiting for `POST /api/start` (the web page previews first).
    Draft,
    Queued,
    Processing,
    Completed,
    Failed,
    Cancelled,
    /// Completed, then its files were removed after the retention period.
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Queued => "queued",
            Status::Processing => "processing",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Status {
        match s {
            "draft" => Status::Draft,
            "queued" => Status::Queued,
            "processing" => Status::Processing,
            "completed" => Status::Completed,
            "cancelled" => Status::Cancelled,
            "expired" => Status::Expired,
            _ => Status::Failed,
        }
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::Draft | Status::Queued | Status::Processing)
    }

    pub const ALL: [Status; 7] = [
        Status::Draft,
        Status::Queued,
        Status::Processing,
        Status::Completed,
        Status::Failed,
        Status::Cancelled,
        Status::Expired,
    ];
}

/// What the probe found about the upload.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputFacts {
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub frames: u64,
    pub duration: f64,
}

/// One task, as stored.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    /// Fingerprint of the API key that created it, if keys are in use.
    pub owner: Option<String>,
    pub status: Status,
    pub stage: String,
    pub settings: Settings,
    /// Models that run and notes on every setting (effective settings).
    pub models: Vec<String>,
    pub notes: Vec<String>,
    pub input_name: String,
    pub input_path: PathBuf,
    pub output_path: PathBuf,
    pub input: InputFacts,
    pub output_size: (u32, u32),
    pub current_frame: u64,
    pub total_frames: u64,
    pub fps: f64,
    pub eta_seconds: f64,
    pub error: Option<(String, String)>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub output_bytes: Option<i64>,
}

impl Task {
    pub fn progress(&self) -> f64 {
        match self.status {
            Status::Completed | Status::Expired => 100.0,
            _ if self.total_frames == 0 => 0.0,
            _ => (100.0 * self.current_frame as f64 / self.total_frames as f64).min(100.0),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("stored task {0} is unreadable: {1}")]
    Corrupt(String, String),
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    owner TEXT,
    idempotency_key TEXT,
    status TEXT NOT NULL,
    stage TEXT NOT NULL,
    settings TEXT NOT NULL,
    models TEXT NOT NULL,
    notes TEXT NOT NULL,
    input_name TEXT NOT NULL,
    input_path TEXT NOT NULL,
    output_path TEXT NOT NULL,
    input TEXT NOT NULL,
    out_width INTEGER NOT NULL,
    out_height INTEGER NOT NULL,
    current_frame INTEGER NOT NULL DEFAULT 0,
    total_frames INTEGER NOT NULL DEFAULT 0,
    fps REAL NOT NULL DEFAULT 0,
    eta_seconds REAL NOT NULL DEFAULT 0,
    error_code TEXT,
    error_message TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    expires_at INTEGER,
    worker_pid INTEGER,
    output_bytes INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS tasks_idempotency ON tasks (owner, idempotency_key);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks (created_at);
";

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the database; safe for several processes at once.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Store { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn insert(&self, t: &Task, idempotency_key: Option<&str>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tasks (id, owner, idempotency_key, status, stage, settings, models, notes,
             input_name, input_path, output_path, input, out_width, out_height, total_frames, created_at,
             expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.id)
        .bind(&t.owner)
        .bind(idempotency_key)
        .bind(t.status.as_str())
        .bind(&t.stage)
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

    pub async fn get(&self, id: &str) -> Result<Option<Task>, StoreError> {
        let row = sqlx::query("SELECT * FROM tasks WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| from_row(&r)).transpose()
    }

    pub async fn find_idempotent(
        &self,
        owner: Option<&str>,
        key: &str,
    ) -> Result<Option<Task>, StoreError> {
        let row = sqlx::query("SELECT * FROM tasks WHERE owner IS ? AND idempotency_key = ?")
            .bind(owner)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| from_row(&r)).transpose()
    }

    /// Newest first; `owner` limits the list to one API key's tasks.
    pub async fn list(
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

    pub async fn count_by_status(&self) -> Result<Vec<(Status, i64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM tasks GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (Status::parse(r.get("status")), r.get("n")))
            .collect())
    }

    pub async fn count_waiting(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE status = 'queued'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Takes a queued task for this worker; `None` if another took it or it was cancelled.
    pub async fn claim(&self, id: &str, pid: u32) -> Result<Option<Task>, StoreError> {
        let row = sqlx::query(
            "UPDATE tasks SET status = 'processing', stage = 'starting', started_at = ?, worker_pid = ?
             WHERE id = ? AND status = 'queued' RETURNING *",
        )
        .bind(now_ms())
        .bind(pid as i64)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| from_row(&r)).transpose()
    }

    /// Records progress; returns whether a cancel was asked for.
    pub async fn progress(
        &self,
        id: &str,
        stage: &str,
        (current, total): (u64, u64),
        fps: f64,
        eta: f64,
    ) -> Result<bool, StoreError> {
        let cancel: Option<i64> = sqlx::query_scalar(
            "UPDATE tasks SET stage = ?, current_frame = ?, total_frames = ?, fps = ?, eta_seconds = ?
             WHERE id = ? RETURNING cancel_requested",
        )
        .bind(stage)
        .bind(current as i64)
        .bind(total as i64)
        .bind(fps)
        .bind(eta)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        // A deleted task counts as cancelled.
        Ok(cancel.is_none_or(|c| c != 0))
    }

    /// Ends a task that is not already ended.
    pub async fn finish(
        &self,
        id: &str,
        status: Status,
        error: Option<(&str, &str)>,
        expires_at: i64,
        output_bytes: Option<i64>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tasks SET status = ?, stage = ?, error_code = ?, error_message = ?, finished_at = ?,
             expires_at = ?, output_bytes = ?, worker_pid = NULL
             WHERE id = ? AND status IN ('draft', 'queued', 'processing')",
        )
        .bind(status.as_str())
        .bind(status.as_str())
        .bind(error.map(|e| e.0))
        .bind(error.map(|e| e.1))
        .bind(now_ms())
        .bind(expires_at)
        .bind(output_bytes)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Queues a draft with its final settings; false if it is not a draft any more.
    pub async fn start(&self, t: &Task) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tasks SET status = 'queued', stage = 'queued', settings = ?, models = ?, notes = ?,
             out_width = ?, out_height = ?, expires_at = NULL WHERE id = ? AND status = 'draft'",
        )
        .bind(json(&t.settings))
        .bind(json(&t.models))
        .bind(json(&t.notes))
        .bind(t.output_size.0)
        .bind(t.output_size.1)
        .bind(&t.id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Puts a task this worker could not finish (shutting down) back in the queue.
    pub async fn release(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tasks SET status = 'queued', stage = 'queued', worker_pid = NULL, current_frame = 0
             WHERE id = ? AND status = 'processing'",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn queued_ids(&self) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM tasks WHERE status = 'queued' ORDER BY created_at")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn request_cancel(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE tasks SET cancel_requested = 1 WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Tasks a stopped server left running go back to the queue; their ids are returned.
    pub async fn requeue_interrupted(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "UPDATE tasks SET status = 'queued', stage = 'queued', worker_pid = NULL, current_frame = 0
             WHERE status = 'processing' AND cancel_requested = 0 RETURNING id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The task a worker process was running when it died.
    pub async fn running_on(&self, pid: u32) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM tasks WHERE status = 'processing' AND worker_pid = ?",
        )
        .bind(pid as i64)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Ended tasks whose files are past their retention.
    pub async fn expired(&self, now: i64) -> Result<Vec<Task>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM tasks WHERE expires_at IS NOT NULL AND expires_at <= ?
             AND status IN ('draft', 'completed', 'failed', 'cancelled')",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// File names (without folder) of every upload and result a live task refers to.
    pub async fn referenced_files(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        let rows =
            sqlx::query("SELECT input_path, output_path FROM tasks WHERE status <> 'expired'")
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

    pub async fn mark_expired(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE tasks SET status = 'expired', stage = 'expired' WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM tasks WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serialises")
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
    let message: Option<String> = r.get("error_message");
    Ok(Task {
        owner: r.get("owner"),
        status: Status::parse(r.get("status")),
        stage: r.get("stage"),
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
        error: code.map(|c| (c, message.unwrap_or_default())),
        created_at: r.get("created_at"),
        started_at: r.get("started_at"),
        finished_at: r.get("finished_at"),
        expires_at: r.get("expires_at"),
        output_bytes: r.get("output_bytes"),
        id,
    })
}
