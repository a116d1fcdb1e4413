//! Tasks and their life cycle, behind the [`TaskStore`] trait: the API writes requests,
//! workers claim queued tasks and write progress and results, and both read. The task row is
//! the one record of what is queued: a worker claims the oldest queued row atomically, so a
//! task runs once however many workers poll. `sqlite` is the embedded backend.

mod postgres;
mod row;
mod sqlite;

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use vsr_media::code::Code;
use vsr_media::settings::Settings;

use crate::storage::Key;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// An enum stored as text: one table gives each value's text, `FromStr` refuses any other.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every value, in table order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<$name, UnknownValue> {
                match s {
                    $($text => Ok($name::$variant),)*
                    _ => Err(UnknownValue(s.to_string())),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        /// A string with one of the table's values, for the OpenAPI document.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some($name::ALL.iter().map(|v| v.as_str())))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

/// Text that names no value of the enum it was read as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown value {0:?}")]
pub struct UnknownValue(pub String);

text_enum! {
    /// Where a task is in its life.
    Status {
        /// Uploaded and probed, waiting for `POST /api/start` (the web page previews first).
        Draft = "draft",
        Queued = "queued",
        Processing = "processing",
        Completed = "completed",
        Failed = "failed",
        Cancelled = "cancelled",
        /// Ended, then its files were removed after the retention period.
        Expired = "expired",
    }
}

impl Status {
    /// Whether the task has ended (nothing runs it any more).
    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::Draft | Status::Queued | Status::Processing)
    }
}

text_enum! {
    /// What a task is doing now, finer than its status (shown as `stage`).
    Stage {
        Draft = "draft",
        Queued = "queued",
        /// Claimed by a worker, not yet loading.
        Starting = "starting",
        LoadingModel = "loading_model",
        Upscaling = "upscaling",
        Completed = "completed",
        Failed = "failed",
        Cancelled = "cancelled",
        Expired = "expired",
    }
}

impl From<Status> for Stage {
    /// The stage a task is at when it enters `status`.
    fn from(status: Status) -> Stage {
        match status {
            Status::Draft => Stage::Draft,
            Status::Queued => Stage::Queued,
            Status::Processing => Stage::Starting,
            Status::Completed => Stage::Completed,
            Status::Failed => Stage::Failed,
            Status::Cancelled => Stage::Cancelled,
            Status::Expired => Stage::Expired,
        }
    }
}

/// A task's id: a UUID, as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(String);

impl TaskId {
    /// A fresh random id.
    pub fn new() -> TaskId {
        TaskId(uuid::Uuid::new_v4().to_string())
    }

    /// The id in `text`, if it is one (anything else names no task).
    pub fn parse(text: &str) -> Option<TaskId> {
        uuid::Uuid::parse_str(text)
            .ok()
            .map(|u| TaskId(u.hyphenated().to_string()))
            .filter(|id| id.0 == text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for TaskId {
    fn default() -> TaskId {
        TaskId::new()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a task failed, as its status shows it: a stable code and our own words.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskError {
    pub code: Code,
    pub message: String,
}

/// What the probe found about the upload.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
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
    pub id: TaskId,
    /// Fingerprint of the API key that created it, if keys are in use.
    pub owner: Option<String>,
    pub status: Status,
    pub stage: Stage,
    pub settings: Settings,
    /// Models that run and notes on every setting (effective settings).
    pub models: Vec<String>,
    pub notes: Vec<String>,
    pub input_name: String,
    /// The upload, in storage.
    pub input_key: Key,
    /// The result, in storage (there once the task completed).
    pub output_key: Key,
    pub input: InputFacts,
    pub output_size: (u32, u32),
    pub current_frame: u64,
    pub total_frames: u64,
    /// Frames the latest attempt took from segments an interrupted one had finished.
    pub resumed_frames: u64,
    /// Frames upscaled over all attempts (more than the video's when work was redone).
    pub upscaled_frames: u64,
    pub fps: f64,
    pub eta_seconds: f64,
    pub error: Option<TaskError>,
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

/// Progress a worker reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Report {
    pub stage: Stage,
    pub current_frame: u64,
    pub total_frames: u64,
    pub fps: f64,
    pub eta_seconds: f64,
    /// Frames this attempt took from finished segments.
    pub resumed_frames: u64,
    /// Frames upscaled over all attempts.
    pub upscaled_frames: u64,
}

/// Who holds a task or a segment: random per worker process (its server picks it for a
/// worker it starts), so that workers of different machines, whose pids may be equal, never
/// pass for each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WorkerId(i64);

impl WorkerId {
    /// A fresh id: random, positive, above every pid (rows of older versions held pids).
    pub fn random() -> WorkerId {
        let random = uuid::Uuid::new_v4().as_u64_pair().0 >> 34;
        WorkerId((1 << 32) + random as i64)
    }

    /// The id as `WorkerId::get` gave it (passed to a worker process on its command line).
    pub fn from_raw(raw: i64) -> WorkerId {
        WorkerId(raw)
    }

    /// As stored in the `worker_pid` column.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A worker as its heartbeat describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerInfo {
    pub id: WorkerId,
    /// The machine it runs on, and its process there.
    pub host: String,
    pub pid: i64,
    /// Where it runs models (`cpu`, `cuda:0 (NVIDIA H200)`).
    pub device: String,
    /// Started on its own (`vsr worker --database`), not by a server beside it.
    pub standalone: bool,
    /// The task it is running.
    pub task: Option<TaskId>,
    pub started_at: i64,
    /// Its last heartbeat (ms).
    pub seen_at: i64,
}

/// How often a worker writes its heartbeat.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(2);

/// What became of a task whose worker died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCrash {
    /// Back in the queue: it resumes from its finished segments.
    Requeued,
    /// Its worker died [`MAX_CRASHES`] times with no segment finished in between: failed.
    Failed,
    /// Its cancel had been asked for: cancelled.
    Cancelled,
    /// It was not processing any more (ended, or taken back already): left as it is.
    Ended,
}

/// How long a claim holds without a progress report, by default: a worker that vanishes (its
/// machine off, the network cut) loses its task to another after this.
pub const LEASE_SECONDS: u64 = 30;

/// Worker deaths in a row, with no segment finished in between, that fail a task.
pub const MAX_CRASHES: i64 = 3;

impl AfterCrash {
    /// The verdict on a task whose worker died, from the `(deaths in a row, cancel asked)`
    /// its row holds after counting this one (`None`: the task was not processing).
    fn of(counted: Option<(i64, i64)>) -> AfterCrash {
        match counted {
            None => AfterCrash::Ended,
            Some((_, cancel)) if cancel != 0 => AfterCrash::Cancelled,
            Some((crashes, _)) if crashes >= MAX_CRASHES => AfterCrash::Failed,
            Some(_) => AfterCrash::Requeued,
        }
    }
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// A terminal status.
    pub status: Status,
    pub error: Option<TaskError>,
    /// When its files are swept.
    pub expires_at: i64,
    /// Size of the result, when there is one.
    pub output_bytes: Option<i64>,
    /// The task's notes, replaced when given: a warning the run found (a damaged source).
    pub notes: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored task {0} is unreadable: {1}")]
    Corrupt(String, String),
}

impl StoreError {
    /// Whether the database could not be reached (down, unreachable, out of connections),
    /// as opposed to refusing the request: worth a retry.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Db(
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_)
            )
        )
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Where tasks are kept. Every method is one atomic step, safe for several processes.
#[async_trait::async_trait]
pub trait TaskStore: Send + Sync {
    /// Records a new task; an `idempotency_key` already used by the same owner fails.
    async fn insert(&self, task: &Task, idempotency_key: Option<&str>) -> Result<(), StoreError>;

    async fn get(&self, id: &TaskId) -> Result<Option<Task>, StoreError>;

    /// The owner's task created with `key`, if any.
    async fn find_idempotent(
        &self,
        owner: Option<&str>,
        key: &str,
    ) -> Result<Option<Task>, StoreError>;

    /// Newest first, and how many there are in all; `owner` limits both to one key's tasks.
    async fn list(
        &self,
        owner: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<Task>, i64), StoreError>;

    async fn count_by_status(&self) -> Result<Vec<(Status, i64)>, StoreError>;

    /// Tasks queued and not yet claimed.
    async fn count_waiting(&self) -> Result<i64, StoreError>;

    /// Claims the oldest queued task for `worker`, if there is one, under a lease until
    /// `lease_until` (ms).
    async fn claim_next(
        &self,
        worker: WorkerId,
        lease_until: i64,
    ) -> Result<Option<Task>, StoreError>;

    /// Records the progress of `worker` and renews its lease until `lease_until` (ms);
    /// returns whether it should stop: a cancel was asked for, or the task is gone or not this
    /// worker's any more (a worker of a stopped server finishing its last frame, or one whose
    /// lease lapsed, must not write over the task's next attempt).
    async fn progress(
        &self,
        id: &TaskId,
        worker: WorkerId,
        lease_until: i64,
        report: &Report,
    ) -> Result<bool, StoreError>;

    /// Ends the task `worker` runs; whether it did: nothing is done if it is not that
    /// worker's any more (its server stopped, or its lease lapsed, and the task went to
    /// another, whose files must then stay).
    async fn finish(
        &self,
        id: &TaskId,
        worker: WorkerId,
        outcome: &Outcome,
    ) -> Result<bool, StoreError>;

    /// Ends a task no worker has (a draft or queued one); false if a worker claimed it first.
    async fn cancel_waiting(&self, id: &TaskId, outcome: &Outcome) -> Result<bool, StoreError>;

    /// Queues a draft with its final settings; false if it is not a draft any more.
    async fn start(&self, task: &Task) -> Result<bool, StoreError>;

    /// Puts the task `worker` could not finish (it is stopping) back in the queue; nothing if
    /// it is not that worker's any more.
    async fn release(&self, id: &TaskId, worker: WorkerId) -> Result<(), StoreError>;

    async fn request_cancel(&self, id: &TaskId) -> Result<(), StoreError>;

    /// Tasks left processing by workers gone with a stopped server (their lease lapsed before
    /// `now`) go back to the queue (their ids are returned), but for those whose cancel was
    /// asked for: they end cancelled, swept at `expires_at`. Tasks whose worker still renews
    /// its lease (a worker on another machine) are left alone.
    async fn requeue_interrupted(
        &self,
        now: i64,
        expires_at: i64,
    ) -> Result<Vec<TaskId>, StoreError>;

    /// The tasks `worker` was running.
    async fn running_on(&self, worker: WorkerId) -> Result<Vec<TaskId>, StoreError>;

    /// Processing tasks whose lease lapsed before `now`, each with the worker that held it:
    /// that worker vanished.
    async fn lapsed(&self, now: i64) -> Result<Vec<(TaskId, WorkerId)>, StoreError>;

    /// Tasks being processed now, oldest first (those an idle worker may help with).
    async fn processing(&self) -> Result<Vec<Task>, StoreError>;

    /// Counts the death of `dead`, the worker holding `id`, and hands the task to `taker`
    /// until `lease_until`, in one statement: whoever else saw the same death (another
    /// server's sweeper, an idle worker, the supervisor) finds the task no longer `dead`'s and
    /// counts nothing. A finished segment since the last death, seen as more frames resumed,
    /// starts the count again. The `(deaths in a row, cancel asked)` the row holds after it;
    /// `None` if `dead` no longer held a processing `id`.
    async fn count_crash(
        &self,
        id: &TaskId,
        dead: WorkerId,
        taker: WorkerId,
        lease_until: i64,
    ) -> Result<Option<(i64, i64)>, StoreError>;

    /// `dead`, the worker holding `id`, died: the task goes back to the queue to resume, or
    /// fails with `failed` once its workers died [`MAX_CRASHES`] times with no segment
    /// finished in between; a task whose cancel was asked for ends with `cancelled`. The
    /// caller holds the task meanwhile (until `lease_until`), so that a death is judged once
    /// however many see it; should the caller die too, the task lapses again.
    async fn crashed(
        &self,
        id: &TaskId,
        dead: WorkerId,
        lease_until: i64,
        failed: &Outcome,
        cancelled: &Outcome,
    ) -> Result<AfterCrash, StoreError> {
        let taker = WorkerId::random();
        let verdict = AfterCrash::of(self.count_crash(id, dead, taker, lease_until).await?);
        match verdict {
            AfterCrash::Ended => {}
            AfterCrash::Cancelled => _ = self.finish(id, taker, cancelled).await?,
            AfterCrash::Failed => _ = self.finish(id, taker, failed).await?,
            AfterCrash::Requeued => self.release(id, taker).await?,
        }
        Ok(verdict)
    }

    /// Ended tasks whose files are past their retention at `now` (ms).
    async fn expired(&self, now: i64) -> Result<Vec<Task>, StoreError>;

    /// Marks an ended task expired; false if it is not ended (a draft started meanwhile).
    async fn mark_expired(&self, id: &TaskId) -> Result<bool, StoreError>;

    /// File names (without folder) of every upload and result a live task refers to.
    async fn referenced_files(&self) -> Result<HashSet<String>, StoreError>;

    async fn delete(&self, id: &TaskId) -> Result<(), StoreError>;

    /// Records that the worker is alive and what it is doing.
    async fn heartbeat(&self, worker: &WorkerInfo) -> Result<(), StoreError>;

    /// Workers whose last heartbeat is at or after `since` (ms), oldest first.
    async fn workers(&self, since: i64) -> Result<Vec<WorkerInfo>, StoreError>;

    /// Forgets the worker (it stopped), or every worker silent since before `before` when
    /// `worker` is `None`.
    async fn forget_workers(&self, worker: Option<WorkerId>, before: i64)
        -> Result<(), StoreError>;

    /// Holds segment `index` of task `id` for `worker` until `lease_until` (ms), unless it is
    /// finished or another worker holds it under a lease still running at `now`; whether
    /// `worker` holds it now.
    async fn claim_segment(
        &self,
        id: &TaskId,
        index: i64,
        worker: WorkerId,
        now: i64,
        lease_until: i64,
    ) -> Result<bool, StoreError>;

    /// Lets go of a segment `worker` holds: recorded `done` once its files are stored, or
    /// forgotten (free for anyone).
    async fn release_segment(
        &self,
        id: &TaskId,
        index: i64,
        worker: WorkerId,
        done: bool,
    ) -> Result<(), StoreError>;

    /// Frees a segment recorded as done whose stored files are missing or damaged, so that
    /// it is done again (a segment someone holds is left alone).
    async fn reopen_segment(&self, id: &TaskId, index: i64) -> Result<(), StoreError>;

    /// Whether a worker holds segment `index` of task `id` under a lease running at `now`.
    async fn segment_held(&self, id: &TaskId, index: i64, now: i64) -> Result<bool, StoreError>;

    /// Segments of task `id` finished or held under a lease running at `now`.
    async fn segments_taken(&self, id: &TaskId, now: i64) -> Result<i64, StoreError>;

    /// Renews until `lease_until` the leases `worker` holds on segments of task `id` that
    /// have not lapsed at `now` (a lapsed one may be another's already).
    async fn renew_segments(
        &self,
        id: &TaskId,
        worker: WorkerId,
        now: i64,
        lease_until: i64,
    ) -> Result<(), StoreError>;

    /// Forgets the segment claims of tasks that are not running or waiting any more.
    async fn forget_segment_claims(&self) -> Result<(), StoreError>;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn task(status: Status, created_at: i64) -> Task {
        let id = TaskId::new();
        Task {
            id: id.clone(),
            owner: None,
            status,
            stage: Stage::from(status),
            settings: Default::default(),
            models: vec![],
            notes: vec![],
            input_name: "in.mp4".into(),
            input_key: Key::new(&id, "mp4"),
            output_key: Key::new(&id, "mkv"),
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

    pub(crate) fn cancelled() -> Outcome {
        Outcome {
            status: Status::Cancelled,
            error: None,
            expires_at: 0,
            output_bytes: None,
            notes: None,
        }
    }

    /// The races between the API, the sweeper and workers end the way each side expects, on
    /// any backend.
    pub(crate) async fn queue_order_and_races(store: &dyn TaskStore) {
        // A draft made first but started after a queued task waits behind it.
        let draft = task(Status::Draft, 1);
        let queued = task(Status::Queued, 2);
        store.insert(&draft, None).await.unwrap();
        store.insert(&queued, None).await.unwrap();
        assert!(store.start(&draft).await.unwrap());
        let (seven, eight) = (WorkerId::random(), WorkerId::random());
        let first = store.claim_next(seven, 50).await.unwrap().unwrap();
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
        let asked = store.claim_next(eight, 50).await.unwrap().unwrap();
        store.request_cancel(&asked.id).await.unwrap();
        // A task whose worker renews its lease stays with it; lapsed ones come back.
        let live = task(Status::Queued, 4);
        store.insert(&live, None).await.unwrap();
        let elsewhere = WorkerId::random();
        let live = store.claim_next(elsewhere, 50).await.unwrap().unwrap();
        let report = Report {
            stage: Stage::Upscaling,
            current_frame: 1,
            total_frames: 10,
            fps: 1.0,
            eta_seconds: 9.0,
            resumed_frames: 0,
            upscaled_frames: 1,
        };
        // Another worker's report is refused (and tells it to stop); the holder's renews.
        assert!(store
            .progress(&live.id, seven, 1000, &report)
            .await
            .unwrap());
        assert!(!store
            .progress(&live.id, elsewhere, 1000, &report)
            .await
            .unwrap());
        let mut lapsed = store.lapsed(60).await.unwrap();
        lapsed.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let mut want = vec![(first.id.clone(), seven), (asked.id.clone(), eight)];
        want.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        assert_eq!(lapsed, want);
        let requeued = store.requeue_interrupted(60, 99).await.unwrap();
        assert_eq!(requeued, vec![first.id.clone()]);
        let asked = store.get(&asked.id).await.unwrap().unwrap();
        assert_eq!(
            (asked.status, asked.expires_at),
            (Status::Cancelled, Some(99))
        );
        assert_eq!(store.count_waiting().await.unwrap(), 1);

        // A death seen by two at once (two servers' sweepers, or a supervisor and a sweeper)
        // counts once: whoever counts first takes the task from the dead worker, the other
        // finds nothing to count. Counted twice, the second death would fail the task.
        for death in 1..MAX_CRASHES {
            let dead = WorkerId::random();
            let held = store.claim_next(dead, 50).await.unwrap().unwrap();
            assert_eq!(held.id, first.id);
            let (one, other) = (WorkerId::random(), WorkerId::random());
            let counted = store.count_crash(&held.id, dead, one, 50).await.unwrap();
            assert_eq!(counted, Some((death, 0)));
            let again = store.count_crash(&held.id, dead, other, 50).await.unwrap();
            assert_eq!(again, None);
            // A late report of the worker taken for dead tells it to stop.
            assert!(store.progress(&held.id, dead, 1000, &report).await.unwrap());
            store.release(&held.id, one).await.unwrap();
        }
        // The last death fails the task; a second look at it changes nothing.
        let failed = Outcome {
            status: Status::Failed,
            error: Some(TaskError {
                code: Code::WorkerCrashed,
                message: "died".into(),
            }),
            expires_at: 0,
            output_bytes: None,
            notes: None,
        };
        let dead = WorkerId::random();
        let held = store.claim_next(dead, 50).await.unwrap().unwrap();
        let cancelled = cancelled();
        let mut verdicts = vec![];
        for _ in 0..2 {
            let seen = store.crashed(&held.id, dead, 50, &failed, &cancelled);
            verdicts.push(seen.await.unwrap());
        }
        assert_eq!(verdicts, [AfterCrash::Failed, AfterCrash::Ended]);
        let first = store.get(&first.id).await.unwrap().unwrap();
        assert_eq!(first.status, Status::Failed);
        assert_eq!(first.error.map(|e| e.code), Some(Code::WorkerCrashed));
    }

    /// The same races on PostgreSQL, in a database of their own on the test server
    /// (`tools/with_postgres.sh`, as `make test` runs the suite).
    #[tokio::test]
    async fn queue_order_and_races_on_postgres() {
        let server = std::env::var("VSR_TEST_POSTGRES").expect(
            "VSR_TEST_POSTGRES is not set: run under tools/with_postgres.sh (make test does)",
        );
        let name = format!("vsr_races_{}", uuid::Uuid::new_v4().simple());
        let admin = PostgresStore::open(&server).await.unwrap();
        admin
            .execute_raw(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let (base, _) = server.rsplit_once('/').unwrap();
        let store = PostgresStore::open(&format!("{base}/{name}"))
            .await
            .unwrap();
        queue_order_and_races(&store).await;
    }

    #[test]
    fn stored_text_round_trips_and_refuses_unknown_values() {
        for &s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>(), Ok(s));
        }
        for &s in Stage::ALL {
            assert_eq!(s.as_str().parse::<Stage>(), Ok(s));
        }
        assert_eq!(
            "finished".parse::<Status>(),
            Err(UnknownValue("finished".into()))
        );
        let id = TaskId::new();
        assert_eq!(TaskId::parse(id.as_str()), Some(id));
        assert_eq!(TaskId::parse("nope"), None);
        assert_eq!(TaskId::parse("../etc"), None);
        // Only the canonical form names a task (so ids compare as text).
        assert_eq!(TaskId::parse("0B5E9D3C-7F1E-4C2A-9F3E-2D1C0B9A8F7E"), None);
    }
}
