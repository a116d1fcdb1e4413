//! The job queue: apalis on the same SQLite file (its Postgres backend is a configuration
//! change away). A job names a task; the task row, claimed atomically, is the source of truth,
//! so a job delivered twice (apalis re-enqueues orphans on worker start) runs once.

use std::time::Duration;

use apalis::prelude::*;
use apalis_sql::sqlite::SqliteStorage;
use apalis_sql::Config;
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpscaleJob {
    pub task_id: String,
}

#[derive(Clone)]
pub struct Queue {
    storage: SqliteStorage<UpscaleJob>,
}

impl Queue {
    pub async fn open(pool: &SqlitePool) -> Result<Queue, sqlx::Error> {
        SqliteStorage::setup(pool).await?;
        let config = Config::new("vsr::upscale")
            .set_poll_interval(Duration::from_millis(250))
            .set_buffer_size(1)
            .set_reenqueue_orphaned_after(Duration::from_secs(120));
        Ok(Queue {
            storage: SqliteStorage::new_with_config(pool.clone(), config),
        })
    }

    pub async fn push(&self, task_id: &str) -> Result<(), sqlx::Error> {
        self.storage
            .clone()
            .push(UpscaleJob {
                task_id: task_id.to_string(),
            })
            .await?;
        Ok(())
    }

    pub fn storage(&self) -> SqliteStorage<UpscaleJob> {
        self.storage.clone()
    }
}
